//! Activity not yet written to the store.
//!
//! Every call on a session slides its idle timeout, but writing the store on
//! every call would make reads cost a write. The tracker remembers the
//! latest activity per session in memory; the service writes it through
//! only when the stored value is older than its write interval, and the
//! sweeper consults the tracker before ending a session as idle.

use moka::sync::Cache;

use crate::clock::UnixMillis;
use crate::domain::{Session, SessionId};

#[derive(Debug)]
pub(super) struct ActivityTracker {
    latest: Cache<SessionId, UnixMillis>,
}

impl ActivityTracker {
    pub(super) fn new(capacity: u64) -> Self {
        Self { latest: Cache::new(capacity) }
    }

    pub(super) fn record(&self, id: &SessionId, at: UnixMillis) {
        self.latest.insert(id.clone(), at);
    }

    /// The later of the stored and the remembered activity.
    pub(super) fn last_active(&self, session: &Session) -> UnixMillis {
        self.latest.get(&session.id).map_or(session.last_active_at, |at| at.max(session.last_active_at))
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.latest.invalidate(id);
    }
}
