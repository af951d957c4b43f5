//! Creating, reading, touching, closing, listing and revoking sessions, and
//! ending request-scoped sessions around a shutdown or after a crash.

use std::time::Duration;

use crate::auth::{Caller, Permission};
use crate::clock::{UnixMillis, whole_millis};
use crate::domain::request_id::Digester;
use crate::domain::{
    EncodedStorage, EndReason, EventType, Grants, InvalidInput, Labels, LogId, RequestDigest, RequestId, Session,
    SessionEnd, SessionId, SessionKind, StorageMap, Token,
};
use crate::service::Error;
use crate::service::error::tenant_quota;
use crate::store::{NewRequest, Once, PageRequest, Record, RequestRecord, SessionFilter, StoreError};

use super::{Opened, Page, Service, SessionRef};

/// A timeout as a create request gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Not given: the kind's default.
    Default,
    /// Explicitly none.
    Never,
    After(Duration),
}

impl Timeout {
    /// The timeout in force: the one given, or `default` when none was.
    fn or(self, default: Option<Duration>) -> Option<Duration> {
        match self {
            Timeout::Default => default,
            Timeout::Never => None,
            Timeout::After(d) => Some(d),
        }
    }
}

/// A create request, parsed and checked at the edge: texts, timeouts,
/// grants and storage entries are within their limits, and only a kind
/// that may be trusted is.
#[derive(Debug, Clone)]
pub struct CreateSession {
    pub kind: SessionKind,
    pub user_id: Option<String>,
    pub labels: Labels,
    pub idle_timeout: Timeout,
    pub lifetime: Timeout,
    pub grants: Grants,
    pub storage: StorageMap,
    pub trusted: bool,
    /// The client's idempotency key: a retry with it answers this create's
    /// session and token.
    pub request_id: Option<RequestId>,
}

impl CreateSession {
    /// What tells this request from another with the same request id.
    fn digest(&self) -> RequestDigest {
        let mut d = Digester::new("CreateSession");
        d.text(self.kind.as_str()).optional(self.user_id.as_deref());
        let labels = &self.labels;
        for label in [&labels.endpoint, &labels.method, &labels.future_call, &labels.client_address, &labels.user_agent]
        {
            d.text(label);
        }
        for timeout in [self.idle_timeout, self.lifetime] {
            match timeout {
                Timeout::Default => d.number(-1),
                Timeout::Never => d.number(-2),
                Timeout::After(after) => d.number(whole_millis(after)),
            };
        }
        for names in [&self.grants.privileges, &self.grants.roles] {
            d.number(names.len() as i64);
            for name in names {
                d.text(name);
            }
        }
        // Maps of `serde_json` are ordered by key: one request, one text.
        d.text(&serde_json::to_string(&self.storage).unwrap_or_default());
        d.number(i64::from(self.trusted));
        d.finish()
    }
}

/// A new session and its token, which is answered once and never stored.
#[derive(Debug)]
pub struct Created {
    pub session: SessionStatus,
    pub token: Token,
}

/// A session with the figures computed at the time of the call.
#[derive(Debug, Clone)]
pub struct SessionStatus {
    pub session: Session,
    pub last_active_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub duration: Duration,
    pub time_left: Option<Duration>,
}

/// What Authenticate answers: whose session it is, when it expires now
/// that it was active, and one answer per privilege asked.
#[derive(Debug)]
pub struct Authenticated {
    /// The session as read for the check: in place, when cached.
    pub record: Record,
    pub expires_at: Option<UnixMillis>,
    pub held: Vec<bool>,
}

/// How a close went.
#[derive(Debug, Clone)]
pub struct Closed {
    pub session_id: SessionId,
    pub end_reason: EndReason,
    pub log_id: Option<LogId>,
}

/// ListSessions' filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub kind: Option<SessionKind>,
    pub open: Option<bool>,
    /// Sessions asked for; the service caps it at `--max-page-size`.
    pub page_size: usize,
    pub after: Option<ListCursor>,
}

/// Where a page of ListSessions ends: the `(created_at, id)` of its last
/// session, newest first.
pub type ListCursor = (UnixMillis, SessionId);

/// RevokeSessions' filters; at least one is required.
#[derive(Debug, Clone, Default)]
pub struct RevokeFilter {
    pub user_id: Option<String>,
    pub kind: Option<SessionKind>,
    pub session_ids: Vec<SessionId>,
}

/// Sessions looked at per page when revoking or recovering.
const BATCH: usize = 500;

impl Service {
    pub(super) fn status(&self, session: Session, last_active_at: UnixMillis) -> SessionStatus {
        let now = self.now();
        let end_at = session.end.as_ref().map_or(now, |e| e.at);
        let expires_at = session.end.is_none().then(|| session.expires_at(last_active_at)).flatten();
        SessionStatus {
            duration: end_at.since(session.created_at),
            time_left: expires_at.map(|at| at.since(now)),
            expires_at,
            last_active_at,
            session,
        }
    }

    /// Starts a session.
    #[tracing::instrument(level = "debug", skip_all, fields(kind = %request.kind, session_id = tracing::field::Empty))]
    pub async fn create(&self, caller: &Caller, request: CreateSession) -> Result<Created, Error> {
        if request.trusted {
            caller.require(Permission::TrustedSessions)?;
        }
        let defaults = self.inner.config.kind_defaults[&request.kind];
        let idle_timeout = request.idle_timeout.or(defaults.idle_timeout);
        let lifetime = request.lifetime.or(defaults.lifetime);
        let storage = EncodedStorage::encode(&request.storage);
        self.inner.config.limits.storage.check_totals(&storage)?;

        let now = self.now();
        let keyed = match &request.request_id {
            None => None,
            Some(request_id) => {
                let key = request_id.create_key(&caller.tenant);
                let digest = request.digest();
                let since = now - self.inner.config.idempotency_window;
                if let Some(record) = self.stores().coordination.request_record(&key, since).await? {
                    return self.replay_create(caller, request_id, digest, record).await;
                }
                Some((request_id, key, digest, since))
            }
        };
        let token = Token::generate();
        let session = Session {
            id: SessionId::generate(),
            token_hash: token.hash(),
            tenant: caller.tenant.clone(),
            kind: request.kind,
            user_id: request.user_id,
            labels: request.labels,
            created_at: now,
            last_active_at: now,
            idle_timeout,
            lifetime,
            trusted: request.trusted,
            grants: request.grants,
            grants_version: 0,
            end: None,
        };
        let event = self.event(&session, EventType::Created, None);
        let tenant_quota = |err| tenant_quota(err, &caller.tenant);
        let event = match keyed {
            None => {
                self.stores().sessions.create_session(session.clone(), storage, event).await.map_err(tenant_quota)?
            }
            Some((request_id, key, digest, since)) => {
                let record = NewRequest {
                    key,
                    digest,
                    sealed_token: Some(request_id.seal(&caller.tenant, &token)),
                    accepted: 0,
                    at: now,
                    expired_before: since,
                };
                let created = self.stores().sessions.create_session_once(session.clone(), storage, event, record);
                match created.await.map_err(tenant_quota)? {
                    Once::Done(event) => event,
                    // Another call with this request id, perhaps on another
                    // replica, was stored first.
                    Once::Replayed(first) => return self.replay_create(caller, request_id, digest, first).await,
                }
            }
        };
        tracing::Span::current().record("session_id", tracing::field::display(&session.id));
        crate::telemetry::metrics::session_created(session.kind);
        tracing::debug!(session_id = %session.id, kind = %session.kind, "session created");
        self.publish(event);
        Ok(Created { session: self.status(session, now), token })
    }

    /// The first answer to a create with `request_id`: its session as it
    /// is now, and its token. The same id with another request is refused.
    async fn replay_create(
        &self,
        caller: &Caller,
        request_id: &RequestId,
        digest: RequestDigest,
        first: RequestRecord,
    ) -> Result<Created, Error> {
        if first.digest != digest {
            return Err(Error::RequestIdReused);
        }
        let token = first
            .sealed_token
            .as_deref()
            .and_then(|sealed| request_id.open(&caller.tenant, sealed))
            .ok_or_else(|| Error::Internal(StoreError::Internal("a stored create's token does not open".into())))?;
        let session = self.find(caller, &SessionRef::found(first.session_id)).await?;
        let last_active = self.last_active(&session);
        tracing::debug!(session_id = %session.id, "answered a retried create");
        Ok(Created { session: self.status(session, last_active), token })
    }

    /// An open session, as read for the call (in place, when cached), and
    /// the time the call counted as its activity.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn get(&self, caller: &Caller, session: &SessionRef) -> Result<Opened, Error> {
        self.open_record(caller, session).await
    }

    /// Whose session a token is and which of `privileges` (canonical,
    /// checked at the edge) it holds, in their order. Counts as activity.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn authenticate(
        &self,
        caller: &Caller,
        session: &SessionRef,
        privileges: &[String],
    ) -> Result<Authenticated, Error> {
        let opened = self.open_record(caller, session).await?;
        let book = self.roles();
        let held = privileges.iter().map(|p| opened.record.holds(&book, opened.now, p)).collect();
        let expires_at = opened.expires_at();
        Ok(Authenticated { record: opened.record, expires_at, held })
    }

    /// Marks activity; answers the new expiry.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn touch(&self, caller: &Caller, session: &SessionRef) -> Result<Option<UnixMillis>, Error> {
        Ok(self.get(caller, session).await?.expires_at())
    }

    /// Ends a session at its client's request. Closing an ended session
    /// answers how it ended; closing an expired one ends it as expired.
    /// `error` and `stack_trace` were checked at the edge.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn close(
        &self,
        caller: &Caller,
        session: &SessionRef,
        error: Option<String>,
        stack_trace: Option<String>,
    ) -> Result<Closed, Error> {
        let mut session = self.find(caller, session).await?;
        let idle = |session: &Session| {
            session.end.is_none()
                && session.expiry(self.last_active(session), self.now())
                    == crate::domain::Expiry::Due(EndReason::IdleTimeout)
        };
        if idle(&session) {
            // Idleness is judged on the stored record (see `open_session`).
            session = self.stored(&session.id).await?;
        }
        let end = match &session.end {
            Some(end) => end.clone(),
            None => {
                let reason = match session.expiry(self.last_active(&session), self.now()) {
                    crate::domain::Expiry::Due(reason) => reason,
                    crate::domain::Expiry::Open { .. } if error.is_some() => EndReason::Failed,
                    crate::domain::Expiry::Open { .. } => EndReason::Closed,
                };
                self.end(&session, reason, error, stack_trace).await?.0
            }
        };
        Ok(closed(&session.id, &end))
    }

    /// Sessions matching a query, newest first.
    #[tracing::instrument(level = "debug", skip_all)]
    /// A service caller lists one user's sessions; an admin any.
    pub async fn list(&self, caller: &Caller, query: ListQuery) -> Result<Page<SessionStatus, ListCursor>, Error> {
        if !caller.is_admin() && query.user_id.is_none() {
            return Err(Error::PermissionDenied("listing across users needs an admin key; name a user_id"));
        }
        let filter = SessionFilter {
            tenant: Some(caller.tenant.clone()),
            user_id: query.user_id,
            kinds: query.kind.into_iter().collect(),
            open: query.open,
            ids: Vec::new(),
        };
        let page =
            PageRequest { after: query.after, limit: query.page_size.clamp(1, self.inner.config.limits.max_page_size) };
        let sessions = self.stores().sessions.list_sessions(&filter, &page).await?;
        let statuses = sessions
            .into_iter()
            .map(|s| {
                let last = self.inner.activity.last_active(&s);
                self.status(s, last)
            })
            .collect();
        Ok(Page::new(statuses, page.limit, |last: &SessionStatus| (last.session.created_at, last.session.id.clone())))
    }

    /// Ends every open session matching `filter` as revoked.
    #[tracing::instrument(level = "debug", skip_all)]
    /// A service caller revokes one user's sessions or named ones; an admin
    /// also by kind across users.
    pub async fn revoke(&self, caller: &Caller, filter: RevokeFilter) -> Result<Vec<SessionId>, Error> {
        if filter.user_id.is_none() && filter.kind.is_none() && filter.session_ids.is_empty() {
            return Err(InvalidInput::new("user_id", "name a user, a kind or session ids to revoke").into());
        }
        if !filter.session_ids.is_empty() {
            caller.require(Permission::SessionIds)?;
        }
        if !caller.is_admin() && filter.user_id.is_none() && filter.session_ids.is_empty() {
            return Err(Error::PermissionDenied(
                "revoking across users needs an admin key; name a user_id or session_ids",
            ));
        }
        let filter = SessionFilter {
            tenant: Some(caller.tenant.clone()),
            user_id: filter.user_id,
            kinds: filter.kind.into_iter().collect(),
            open: Some(true),
            ids: filter.session_ids,
        };
        self.end_matching(filter, EndReason::Revoked).await
    }

    /// Ends the request-scoped sessions left open by an earlier run that
    /// did not shut down. Called at start-up.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn recover_after_crash(&self) -> Result<Vec<SessionId>, Error> {
        let ended = self.end_matching(SessionFilter::open_request_scoped(), EndReason::ServerCrashed).await?;
        if !ended.is_empty() {
            tracing::warn!(count = ended.len(), "ended request-scoped sessions left open by an unclean stop");
        }
        Ok(ended)
    }

    /// Ends request-scoped sessions because sessiond is shutting down.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn end_for_shutdown(&self) -> Result<Vec<SessionId>, Error> {
        self.end_matching(SessionFilter::open_request_scoped(), EndReason::ServerShutdown).await
    }

    async fn end_matching(&self, filter: SessionFilter, reason: EndReason) -> Result<Vec<SessionId>, Error> {
        let mut ended = Vec::new();
        // Each page is re-read from the start: ended sessions leave the
        // open-only listing, so the next page is the first again.
        loop {
            let page = PageRequest { after: None, limit: BATCH };
            let sessions = self.stores().sessions.list_sessions(&filter, &page).await?;
            let count = sessions.len();
            let batch: Vec<(&Session, EndReason)> = sessions.iter().map(|session| (session, reason)).collect();
            ended.extend(self.end_many(&batch).await?);
            if count < BATCH {
                return Ok(ended);
            }
        }
    }
}

fn closed(id: &SessionId, end: &SessionEnd) -> Closed {
    Closed { session_id: id.clone(), end_reason: end.reason, log_id: end.log_id.clone() }
}
