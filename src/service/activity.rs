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

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use moka::sync::Cache;

use crate::clock::UnixMillis;
use crate::domain::{Error, Session, SessionId};

use super::Service;

/// What the tracker knows of one session. Shared by every call on it, and
/// updated in place, so a call costs one cache lookup and no insert.
#[derive(Debug)]
pub(super) struct Seen {
    latest: AtomicI64,
    written: AtomicI64,
}

impl Seen {
    /// The latest activity seen.
    pub(super) fn latest(&self) -> UnixMillis {
        UnixMillis(self.latest.load(Ordering::Acquire))
    }

    /// Remembers activity at `at` (never moving back).
    pub(super) fn record(&self, at: UnixMillis) {
        self.latest.fetch_max(at.0, Ordering::AcqRel);
    }

    /// Notes that activity up to `at` is in the store.
    pub(super) fn written(&self, at: UnixMillis) {
        self.written.fetch_max(at.0, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub(super) struct ActivityTracker {
    seen: Cache<SessionId, Arc<Seen>>,
}

impl ActivityTracker {
    pub(super) fn new(capacity: u64) -> Self {
        Self { seen: Cache::new(capacity) }
    }

    /// The session's entry, made from its stored activity on first use.
    pub(super) fn entry(&self, session: &Session) -> Arc<Seen> {
        let stored = session.last_active_at.0;
        let seen = self.seen.get_with_by_ref(&session.id, || {
            Arc::new(Seen { latest: AtomicI64::new(stored), written: AtomicI64::new(stored) })
        });
        // The store may know of later writes (another process, a flush).
        seen.written(session.last_active_at);
        seen
    }

    /// Notes that activity up to `at` is in the store.
    pub(super) fn written(&self, id: &SessionId, at: UnixMillis) {
        if let Some(seen) = self.seen.get(id) {
            seen.written(at);
        }
    }

    /// The later of the stored and the remembered activity.
    pub(super) fn last_active(&self, session: &Session) -> UnixMillis {
        self.seen.get(&session.id).map_or(session.last_active_at, |s| s.latest().max(session.last_active_at))
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.seen.invalidate(id);
    }

    /// Sessions with activity not yet written and whose last write is at or
    /// before `written_by`.
    fn unwritten(&self, written_by: UnixMillis) -> Vec<(SessionId, UnixMillis)> {
        self.seen
            .iter()
            .filter_map(|(id, s)| {
                let (latest, written) = (s.latest.load(Ordering::Acquire), s.written.load(Ordering::Acquire));
                (latest > written && written <= written_by.0).then(|| ((*id).clone(), UnixMillis(latest)))
            })
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
