//! Activity not yet written to the store.
//!
//! Every call on a session slides its idle timeout, but writing the store on
//! every call would make reads cost a write. The tracker remembers, per
//! session, the latest activity and the latest written. The service writes
//! through when a call finds the stored value older than its write interval;
//! each sweep writes activity left unwritten for `activity_flush`, and
//! shutdown writes all of it ([`Service::flush_activity`]). So activity
//! stays unwritten about `activity_flush` at most (plus one sweep
//! interval), and the sweeper consults the tracker before ending a session
//! as idle.

use moka::sync::Cache;

use crate::clock::UnixMillis;
use crate::domain::{Error, Session, SessionId};

use super::Service;

#[derive(Debug, Clone, Copy)]
struct Seen {
    latest: UnixMillis,
    written: UnixMillis,
}

#[derive(Debug)]
pub(super) struct ActivityTracker {
    seen: Cache<SessionId, Seen>,
}

impl ActivityTracker {
    pub(super) fn new(capacity: u64) -> Self {
        Self { seen: Cache::new(capacity) }
    }

    /// Remembers activity at `at` on a session whose stored activity is
    /// `session.last_active_at`.
    pub(super) fn record(&self, session: &Session, at: UnixMillis) {
        let written =
            self.seen.get(&session.id).map_or(session.last_active_at, |s| s.written.max(session.last_active_at));
        self.seen.insert(session.id.clone(), Seen { latest: at, written });
    }

    /// Notes that activity up to `at` is in the store.
    pub(super) fn written(&self, id: &SessionId, at: UnixMillis) {
        if let Some(seen) = self.seen.get(id) {
            self.seen.insert(id.clone(), Seen { latest: seen.latest, written: seen.written.max(at) });
        }
    }

    /// The later of the stored and the remembered activity.
    pub(super) fn last_active(&self, session: &Session) -> UnixMillis {
        self.seen.get(&session.id).map_or(session.last_active_at, |s| s.latest.max(session.last_active_at))
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.seen.invalidate(id);
    }

    /// Sessions with activity not yet written and whose last write is at or
    /// before `written_by`.
    fn unwritten(&self, written_by: UnixMillis) -> Vec<(SessionId, UnixMillis)> {
        self.seen
            .iter()
            .filter(|(_, s)| s.latest > s.written && s.written <= written_by)
            .map(|(id, s)| ((*id).clone(), s.latest))
            .collect()
    }
}

impl Service {
    /// Writes every remembered activity the store has not seen yet, as
    /// shutdown does. Answers how many sessions were written.
    pub async fn flush_activity(&self) -> Result<usize, Error> {
        self.flush_activity_written_before(UnixMillis(i64::MAX)).await
    }

    /// Writes remembered activity of sessions last written `activity_flush`
    /// ago or longer, as each sweep does.
    pub(super) async fn flush_stale_activity(&self) -> Result<usize, Error> {
        self.flush_activity_written_before(self.now() - self.inner.config.activity_flush).await
    }

    async fn flush_activity_written_before(&self, written_by: UnixMillis) -> Result<usize, Error> {
        let unwritten = self.inner.activity.unwritten(written_by);
        let count = unwritten.len();
        for (id, at) in unwritten {
            self.store().record_activity(&id, at).await?;
            self.inner.activity.written(&id, at);
        }
        Ok(count)
    }
}
