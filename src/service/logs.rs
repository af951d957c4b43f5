//! Writing, reading and following session logs. Entries under the
//! session's policy level are dropped; the rest are stored before the call
//! answers, readable at once when the policy logs the session continuously.
//!
//! A follower reads from the store, from its cursor on, each time entries
//! become readable: this process's own appends and ends wake it directly,
//! other replicas' through the store's notifications (Postgres `NOTIFY`,
//! see [`Service::run_event_feed`]). It holds no entries between reads: a
//! follower that stops taking pages waits in place (at most a few pages
//! queued) and is ended after [`SLOW_FOLLOWER`].

use std::time::Duration;

use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::domain::request_id::Digester;
use crate::domain::{
    InvalidInput, LogCursor, LogEntry, LogPage, LogQuery, LogRecord, RequestDigest, RequestId, SessionId,
};
use crate::service::Error;
use crate::service::error::tenant_quota;
use crate::store::{NewRequest, Once, RequestRecord};

use super::{Page, Service, SessionRef};

/// Pages a follower may have queued and not yet taken; one more slot is
/// kept for the error that ends a slow one.
const FOLLOW_QUEUE: usize = 4;

/// How long a follower may leave its queue full before it is ended.
pub const SLOW_FOLLOWER: Duration = Duration::from_secs(10);

/// How soon a follower reads again when the store announced entries its
/// last read could not see yet (a transaction that began before theirs
/// was still running).
const SETTLE_RETRY: Duration = Duration::from_millis(20);

/// Records a follower is sent at most at once.
const FOLLOW_PAGE: usize = 500;

/// A StreamLog stream's binding to its session: none until a message
/// names one (see [`Service::stream_log_target`]).
#[derive(Debug, Default)]
pub struct LogStream {
    /// The bound session's id, and a reference naming it by that id.
    target: Option<(SessionId, SessionRef)>,
}

impl LogStream {
    /// Checks the stream's end: a stream that never named its session is
    /// refused, even when it sent nothing else.
    pub fn finish(&self) -> Result<(), Error> {
        match self.target {
            Some(_) => Ok(()),
            None => Err(InvalidInput::new("session", "the stream named no session").into()),
        }
    }
}

/// A QueryLogs answer: one page of records (`next` when more may follow),
/// and the cursor to follow from after them, given on every page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsPage {
    pub page: Page<LogRecord, LogCursor>,
    pub cursor: LogCursor,
}

/// Records sent to a follower, and where to resume after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub records: Vec<LogRecord>,
    pub cursor: LogCursor,
}

/// What tells a batch of entries from another with the same request id.
fn digest(entries: &[LogEntry]) -> RequestDigest {
    let mut d = Digester::new("Log");
    d.number(entries.len() as i64);
    for e in entries {
        d.number(e.level as i64)
            .text(&e.message)
            .optional(e.exception.as_deref())
            .optional(e.stack_trace.as_deref())
            .number(e.client_time.map_or(i64::MIN, |t| t.0));
    }
    d.finish()
}

/// The first answer to a log append with the same request id: its count.
fn replayed(first: RequestRecord, digest: RequestDigest) -> Result<usize, Error> {
    if first.digest != digest {
        return Err(Error::RequestIdReused);
    }
    Ok(usize::try_from(first.accepted).unwrap_or(usize::MAX))
}

impl Service {
    /// Appends entries (checked at the edge); answers how many were kept
    /// by the level filter.
    ///
    /// With a `request_id`, the entries are stored with an idempotency
    /// record in one transaction; a retry with the same id within the
    /// window is answered the first count and stores nothing, even when the
    /// session has ended since.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty, entries = entries.len()))]
    pub async fn log(
        &self,
        caller: &Caller,
        session: &SessionRef,
        entries: Vec<LogEntry>,
        request_id: Option<&RequestId>,
    ) -> Result<usize, Error> {
        let keyed = match request_id {
            None => None,
            Some(request_id) => {
                let found = self.find(caller, session).await?;
                let key = request_id.log_key(&caller.tenant, &found.id);
                let digest = digest(&entries);
                let since = self.now() - self.inner.config.idempotency_window;
                if let Some(first) = self.stores().coordination.request_record(&key, since).await? {
                    return replayed(first, digest);
                }
                Some((key, digest, since))
            }
        };
        let session = self.open_session(caller, session).await?;
        let policy = self.inner.config.log_policies.for_session(session.kind, &session.labels.endpoint);
        let now = self.now();
        let kept: Vec<LogEntry> = entries
            .into_iter()
            .filter(|e| e.level >= policy.min_level)
            .map(|e| LogEntry { logged_at: now, continuous: policy.continuous, ..e })
            .collect();
        if kept.is_empty() {
            return Ok(0);
        }
        let Some((key, digest, since)) = keyed else {
            let count = kept.len();
            self.stores().logs.append_logs(&session.id, kept).await.map_err(|e| tenant_quota(e, &session.tenant))?;
            self.logs_readable(policy.continuous);
            return Ok(count);
        };
        let count = kept.len();
        let record =
            NewRequest { key, digest, sealed_token: None, accepted: count as u64, at: now, expired_before: since };
        let appended = self.stores().logs.append_logs_once(&session.id, kept, record).await;
        match appended.map_err(|e| tenant_quota(e, &session.tenant))? {
            Once::Done(()) => {
                self.logs_readable(policy.continuous);
                Ok(count)
            }
            // The same request, perhaps on another replica, was stored first.
            Once::Replayed(first) => replayed(first, digest),
        }
    }

    /// Wakes this process's followers when entries became readable.
    pub(super) fn logs_readable(&self, readable: bool) {
        if readable {
            self.inner.logs_readable.send_modify(|_| {});
        }
    }

    /// The id of the caller's session `session` names, open or ended: what
    /// a StreamLog writes to once its first message named it. Whether it is
    /// still open is checked per message, by [`Service::log`], which answers
    /// a retried message even after the session ended.
    async fn log_target(&self, caller: &Caller, session: &SessionRef) -> Result<SessionId, Error> {
        Ok(self.find(caller, session).await?.id)
    }

    /// The session a StreamLog message writes to: the one the stream's
    /// first message named (by token or id), bound by id from then on.
    /// Later messages may name it again, but no other session.
    pub async fn stream_log_target<'a>(
        &self,
        caller: &Caller,
        stream: &'a mut LogStream,
        named: Option<&SessionRef>,
    ) -> Result<&'a SessionRef, Error> {
        if let Some(named) = named {
            let id = self.log_target(caller, named).await?;
            match &stream.target {
                Some((bound, _)) if *bound != id => {
                    return Err(InvalidInput::new("session", "a stream may not switch sessions").into());
                }
                Some(_) => {}
                None => stream.target = Some((id.clone(), SessionRef::id(id))),
            }
        }
        match &stream.target {
            Some((_, session)) => Ok(session),
            None => Err(InvalidInput::new("session", "the first message must name the session").into()),
        }
    }

    /// Readable entries (of kept logs, and of open sessions logged
    /// continuously) after the query's cursor, in the order they became
    /// readable; answers them and the cursor to resume after them.
    /// Admin callers only: logs span users.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn query_logs(&self, caller: &Caller, mut query: LogQuery) -> Result<LogsPage, Error> {
        self.log_reader(caller, &mut query)?;
        let found = self.stores().logs.query_logs(&query).await?;
        let cursor = found.cursor(query.after, query.limit);
        let page = Page { next: (found.records.len() >= query.limit).then_some(cursor), items: found.records };
        Ok(LogsPage { page, cursor })
    }

    fn log_reader(&self, caller: &Caller, query: &mut LogQuery) -> Result<(), Error> {
        if !caller.is_admin() {
            return Err(Error::PermissionDenied("reading logs needs an admin key"));
        }
        query.tenant = Some(caller.tenant.clone());
        query.limit = query.limit.clamp(1, self.inner.config.limits.max_page_size);
        Ok(())
    }

    /// Streams readable entries matching `query` after `from` (`None`:
    /// from now on), then each as it becomes readable, on any replica,
    /// until the receiver is dropped or sessiond shuts down. Admin callers
    /// only. A store failure, or a follower that leaves its queue full
    /// longer than [`SLOW_FOLLOWER`], ends the stream with an error.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn follow_logs(
        &self,
        caller: &Caller,
        mut query: LogQuery,
        from: Option<LogCursor>,
    ) -> Result<mpsc::Receiver<Result<LogBatch, Error>>, Error> {
        query.limit = FOLLOW_PAGE;
        self.log_reader(caller, &mut query)?;
        // Subscribe before reading where "now" is, so nothing readable
        // from then on is missed.
        let wake = self.inner.logs_readable.subscribe();
        query.after = match from {
            Some(cursor) => cursor,
            None => self.stores().logs.log_cursor_now().await?,
        };
        let (sender, receiver) = mpsc::channel(FOLLOW_QUEUE + 1);
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(err) = service.follow(query, wake, &sender).await {
                // The queue keeps a slot for this; the receiver may be gone.
                let _ = sender.try_send(Err(err));
            }
        });
        Ok(receiver)
    }

    async fn follow(
        &self,
        mut query: LogQuery,
        mut wake: tokio::sync::watch::Receiver<i64>,
        sender: &mpsc::Sender<Result<LogBatch, Error>>,
    ) -> Result<(), Error> {
        let mut stopping = self.stopping();
        loop {
            wake.borrow_and_update();
            let page: LogPage = self.stores().logs.query_logs(&query).await?;
            let full = page.records.len() >= query.limit;
            let cursor = page.cursor(query.after, query.limit);
            // Positions announced at or above the horizon are committed
            // but not settled yet: read again shortly rather than wait for
            // the next announcement, which may never come.
            let unsettled = *wake.borrow() >= page.horizon;
            if !page.records.is_empty() {
                // Send only while two slots are free, so one is always left
                // for the error that ends a follower that stopped reading.
                let permits = tokio::select! {
                    permits = tokio::time::timeout(SLOW_FOLLOWER, sender.reserve_many(2)) => permits,
                    _ = stopping.wait_for(|stop| *stop) => return Ok(()),
                };
                let Ok(permits) = permits else { return Err(Error::FollowerTooSlow { waited: SLOW_FOLLOWER }) };
                let Ok(mut permits) = permits else { return Ok(()) };
                if let Some(permit) = permits.next() {
                    permit.send(Ok(LogBatch { records: page.records, cursor }));
                }
            }
            query.after = cursor;
            if full {
                continue;
            }
            tokio::select! {
                changed = wake.changed(), if !unsettled => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(SETTLE_RETRY), if unsettled => {}
                _ = stopping.wait_for(|stop| *stop) => return Ok(()),
                () = sender.closed() => return Ok(()),
            }
        }
    }
}
