//! Lifecycle events: what WatchSessions streams. Stores record each event in
//! the same transaction as the change that causes it and number them.

use crate::clock::UnixMillis;

use super::ids::{SessionId, TenantId};
use super::kind::{EndReason, EventType, SessionKind};
use super::session::Session;

/// An event before the store has numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub session_id: SessionId,
    pub tenant: TenantId,
    pub user_id: Option<String>,
    pub kind: SessionKind,
    pub end_reason: Option<EndReason>,
    pub at: UnixMillis,
}

impl NewEvent {
    /// The event of `event_type` for `session` at `at`, in its tenant.
    pub fn of(session: &Session, event_type: EventType, end_reason: Option<EndReason>, at: UnixMillis) -> Self {
        Self {
            event_type,
            session_id: session.id.clone(),
            tenant: session.tenant.clone(),
            user_id: session.user_id.clone(),
            kind: session.kind,
            end_reason,
            at,
        }
    }
}

/// A recorded event. Sequence numbers increase by one per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: u64,
    pub event: NewEvent,
}

/// What a watcher asked to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Always set by the service: the watcher's tenant.
    pub tenant: Option<TenantId>,
    pub session_id: Option<SessionId>,
    pub user_id: Option<String>,
    pub kind: Option<SessionKind>,
}

impl EventFilter {
    pub fn matches(&self, event: &NewEvent) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == event.tenant)
            && self.session_id.as_ref().is_none_or(|id| *id == event.session_id)
            && self.user_id.as_ref().is_none_or(|u| event.user_id.as_ref() == Some(u))
            && self.kind.is_none_or(|k| k == event.kind)
    }
}
