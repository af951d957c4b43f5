//! Writing and reading session logs. Entries under the session's policy
//! level are dropped; the rest are stored before the call answers.

use crate::auth::Caller;
use crate::domain::request_id::Digester;
use crate::domain::{Error, LogEntry, LogQuery, LogRecord, RequestDigest, RequestId, SessionId};
use crate::store::{NewRequest, Once, RequestRecord};

use super::{Service, SessionRef};

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
                if let Some(first) = self.store().request_record(&key, since).await? {
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
            .map(|e| LogEntry { logged_at: now, ..e })
            .collect();
        if kept.is_empty() {
            return Ok(0);
        }
        let Some((key, digest, since)) = keyed else {
            self.store().append_logs(&session.id, &kept).await?;
            return Ok(kept.len());
        };
        let record =
            NewRequest { key, digest, sealed_token: None, accepted: kept.len() as u64, at: now, expired_before: since };
        match self.store().append_logs_once(&session.id, &kept, &record).await? {
            Once::Done(()) => Ok(kept.len()),
            // The same request, perhaps on another replica, was stored first.
            Once::Replayed(first) => replayed(first, digest),
        }
    }

    /// The id of the caller's session `session` names, open or ended: what
    /// a StreamLog writes to once its first message named it. Whether it is
    /// still open is checked per message, by [`Service::log`], which answers
    /// a retried message even after the session ended.
    pub async fn log_target(&self, caller: &Caller, session: &SessionRef) -> Result<SessionId, Error> {
        Ok(self.find(caller, session).await?.id)
    }

    /// Entries of kept logs, by increasing entry id.
    #[tracing::instrument(level = "debug", skip_all)]
    /// Admin callers only: logs span users.
    pub async fn query_logs(&self, caller: &Caller, mut query: LogQuery) -> Result<Vec<LogRecord>, Error> {
        if !caller.is_admin() {
            return Err(Error::PermissionDenied("reading logs needs an admin key"));
        }
        query.tenant = Some(caller.tenant.clone());
        query.limit = query.limit.clamp(1, self.inner.config.limits.max_page_size);
        Ok(self.store().query_logs(&query).await?)
    }
}
