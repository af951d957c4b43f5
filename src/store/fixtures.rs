//! Test fixtures, not part of the service: the sessions, events and ends
//! the library's own unit tests and the store conformance suite
//! (`crates/sessiond-conformance`, which re-exports them) build on.

use super::SessionRecords;
use crate::clock::UnixMillis;
use crate::domain::{
    EncodedStorage, EndReason, Event, EventType, Grants, Labels, LogId, NewEvent, Session, SessionEnd, SessionId,
    SessionKind, StorageMap, TenantId, Token,
};

/// The time the suite's sessions start at.
pub const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// An open session of `kind` for `user` in the default tenant, created at
/// `at`, with a fresh token and no timeouts.
pub fn session(kind: SessionKind, user: Option<&str>, at: UnixMillis) -> Session {
    session_of(&TenantId::default(), kind, user, at)
}

/// [`session`] in `tenant`.
pub fn session_of(tenant: &TenantId, kind: SessionKind, user: Option<&str>, at: UnixMillis) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: Token::generate().hash(),
        tenant: tenant.clone(),
        kind,
        user_id: user.map(str::to_owned),
        labels: Labels::default(),
        created_at: at,
        last_active_at: at,
        idle_timeout: None,
        lifetime: None,
        trusted: false,
        grants: Grants::default(),
        grants_version: 0,
        end: None,
    }
}

/// The event of `event_type` for `session` at `at`, in the session's tenant.
pub fn event(event_type: EventType, session: &Session, at: UnixMillis) -> NewEvent {
    NewEvent::of(session, event_type, None, at)
}

/// How `session` ends for `reason` at `at`, its log kept or not.
pub fn ending(session: &Session, reason: EndReason, at: UnixMillis, keep_log: bool) -> (SessionEnd, NewEvent) {
    let end = SessionEnd {
        reason,
        at,
        error: (reason == EndReason::Failed).then(|| "boom".to_owned()),
        stack_trace: None,
        log_id: keep_log.then(LogId::generate),
        slow: false,
    };
    let event = NewEvent::of(session, reason.event_type(), Some(reason), at);
    (end, event)
}

/// Stores `session` with `storage`, answering its `created` event.
pub async fn create(store: &dyn SessionRecords, session: &Session, storage: &StorageMap) -> Event {
    let created = event(EventType::Created, session, session.created_at);
    store
        .create_session(session.clone(), EncodedStorage::encode(storage), created)
        .await
        .expect("creating a new session succeeds")
}
