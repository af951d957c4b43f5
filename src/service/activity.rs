//! Activity not yet written to the store.
//!
//! Every call on a session slides its idle timeout, but writing the store on
//! every call would make reads cost a write. The tracker remembers, per
//! session, the latest activity, the latest written and the session's write
//! interval. A call never writes itself: when it finds the stored value
//! nearly a write interval old ([`due_after`]) it wakes the activity writer
//! ([`Service::run_activity_writer`]), which gathers for a moment
//! ([`GATHER`], less for short intervals) and writes every session so due in
//! one batch, off the call's path. Each sweep does the same, and shutdown
//! writes all of it ([`Service::flush_activity`]), in batches of
//! [`FLUSH_BATCH`] (shutdown: [`SHUTDOWN_FLUSH_BATCH`]). So activity stays
//! unwritten about one write interval at most, and the sweeper consults the
//! tracker before ending a session as idle.

use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{UnixMillis, whole_millis};
use crate::domain::{Session, SessionId};
use crate::service::Error;
use crate::shards::{Shard, Shards};
use crate::telemetry::throttle::{self, Admitted, Cause};

use super::Service;

/// Shards of the tracker, each behind its own lock.
const SHARDS: usize = 64;

/// Sessions whose activity one store call writes while serving: each call
/// is a transaction (per writer) and a sync to disk, which costs more than
/// thousands of activity rows, yet holds up the writes queued behind it.
pub const FLUSH_BATCH: usize = 50_000;

/// The same at shutdown, when no call waits behind it: a batch's rows are
/// spread over the whole activity table, so each batch rewrites most of its
/// pages, and fewer batches write fewer pages.
pub const SHUTDOWN_FLUSH_BATCH: usize = 1_000_000;

/// The longest the activity writer gathers after a call wakes it: every
/// session found due meanwhile joins one batch, one store transaction (and,
/// embedded, one sync to disk) where a wake-up per read of an idle session
/// would make many small ones.
pub const GATHER: Duration = Duration::from_millis(200);

/// How long the writer may gather once a session with this write interval
/// is due: [`GATHER`], or an eighth of the interval if that is shorter.
fn gathering(interval: Duration) -> Duration {
    GATHER.min(interval / 8)
}

/// How old a session's stored activity is when the session is due for
/// writing: its write interval less the writer's gathering, so that, found
/// due that early and gathered that long, its activity is still written
/// within one write interval (which replicas sharing the store rely on:
/// `store::UnseenActivity`).
pub(super) fn due_after(interval: Duration) -> Duration {
    interval - gathering(interval)
}

/// Calls' word to the activity writer that activity is due, and how long
/// the writer may gather before writing it.
#[derive(Debug)]
pub(super) struct DueActivity {
    wake: Notify,
    /// Wakes a gathering writer: a session with a shorter gathering is due.
    hurry: Notify,
    /// The shortest gathering of the sessions found due since the writer
    /// last collected, in milliseconds (`i64::MAX`: none).
    gather_ms: AtomicI64,
}

impl Default for DueActivity {
    fn default() -> Self {
        Self { wake: Notify::new(), hurry: Notify::new(), gather_ms: AtomicI64::new(i64::MAX) }
    }
}

impl DueActivity {
    /// A call found a session with this write interval due.
    pub(super) fn found(&self, interval: Duration) {
        let ms = whole_millis(gathering(interval));
        // Read first: nearly every session due has the gathering already
        // noted, and a read keeps the line shared between the callers.
        if ms < self.gather_ms.load(Ordering::Acquire) && ms < self.gather_ms.fetch_min(ms, Ordering::AcqRel) {
            self.hurry.notify_one();
        }
        self.wake.notify_one();
    }

    /// Waits for a call to find activity due, then gathers: answers once
    /// the shortest gathering of the sessions found due since has passed.
    /// Afterwards, sessions found due count toward the next batch.
    async fn gathered(&self) {
        self.wake.notified().await;
        let woke = tokio::time::Instant::now();
        loop {
            let gather = match self.gather_ms.load(Ordering::Acquire) {
                i64::MAX => GATHER,
                ms => Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
            };
            tokio::select! {
                () = tokio::time::sleep_until(woke + gather) => break,
                () = self.hurry.notified() => {}
            }
        }
        self.gather_ms.store(i64::MAX, Ordering::Release);
    }
}

/// What the tracker knows of one session. Updated in place under a shared
/// lock, so a call on a known session takes no exclusive lock.
#[derive(Debug)]
struct Seen {
    latest: AtomicI64,
    written: AtomicI64,
    /// How old the last write is when the session is due (its write
    /// interval's [`due_after`]), in milliseconds.
    due_after: i64,
}

impl Seen {
    fn new(latest: UnixMillis, written: UnixMillis, interval: Duration) -> Self {
        let due_after = whole_millis(due_after(interval));
        Self { latest: AtomicI64::new(latest.0), written: AtomicI64::new(written.0), due_after }
    }

    fn latest(&self) -> UnixMillis {
        UnixMillis(self.latest.load(Ordering::Acquire))
    }

    fn written(&self) -> UnixMillis {
        UnixMillis(self.written.load(Ordering::Acquire))
    }

    /// Whether the store holds all activity seen (or later).
    fn is_written(&self) -> bool {
        self.latest() <= self.written()
    }
}

/// Moves `time` up to `to`, never back. Every call on a session raises its
/// times, most of them to what they already hold (a millisecond holds many
/// calls): a read answers those without writing, so the cache line stays
/// shared between the threads that read it rather than moving to each
/// writer in turn.
fn raise(time: &AtomicI64, to: UnixMillis) {
    if time.load(Ordering::Acquire) < to.0 {
        time.fetch_max(to.0, Ordering::AcqRel);
    }
}

/// Per session, the latest activity seen and the latest written.
///
/// Holds only what the store lacks: a session whose activity is all written
/// is dropped at the next flush, and comes back with its next call. Nothing
/// else removes an entry but the session's end, so unwritten activity is
/// never lost; the tracker holds the sessions used within about
/// `activity_flush`.
#[derive(Debug)]
pub(super) struct ActivityTracker {
    shards: Shards<SessionId, Seen>,
    /// Picks a session's shard (see `shards` on the choice of hash).
    hasher: foldhash::fast::RandomState,
}

impl Default for ActivityTracker {
    fn default() -> Self {
        Self { shards: Shards::new(SHARDS), hasher: Default::default() }
    }
}

impl ActivityTracker {
    fn shard(&self, id: &SessionId) -> &Shard<SessionId, Seen> {
        self.shards.at(self.hasher.hash_one(id) as usize)
    }

    /// A call's visit to `session`, under one look-up of it: `decide` is
    /// given the activity known (as [`ActivityTracker::observe`] answers
    /// it) and answers either the call's own activity and the session's
    /// write interval, which are then remembered (as by
    /// [`ActivityTracker::record`]), or why the call counts as none.
    pub(super) fn visit<E>(
        &self,
        id: &SessionId,
        stored: UnixMillis,
        decide: impl FnOnce(UnixMillis) -> Result<(UnixMillis, Duration), E>,
    ) -> Result<(), E> {
        let shard = self.shard(id);
        if let Some(seen) = shard.read().get(id) {
            raise(&seen.written, stored);
            let (at, _) = decide(seen.latest().max(stored))?;
            raise(&seen.latest, at);
            return Ok(());
        }
        let (at, interval) = decide(stored)?;
        let mut shard = shard.write();
        let seen = shard.entry(id.clone()).or_insert_with(|| Seen::new(at, stored, interval));
        raise(&seen.latest, at);
        Ok(())
    }

    /// The later of the stored and the remembered activity, noting that the
    /// store has the former (another process or a flush may have written it).
    #[cfg(test)]
    pub(super) fn observe(&self, session: &Session) -> UnixMillis {
        let stored = session.last_active_at;
        self.shard(&session.id).read().get(&session.id).map_or(stored, |seen| {
            raise(&seen.written, stored);
            seen.latest().max(stored)
        })
    }

    /// Remembers activity on `session` at `at` (never moving back), to be
    /// written once its last write is `interval` old.
    #[cfg(test)]
    pub(super) fn record(&self, session: &Session, at: UnixMillis, interval: Duration) {
        let shard = self.shard(&session.id);
        if let Some(seen) = shard.read().get(&session.id) {
            raise(&seen.latest, at);
            return;
        }
        let mut shard = shard.write();
        let seen = shard.entry(session.id.clone()).or_insert_with(|| Seen::new(at, session.last_active_at, interval));
        raise(&seen.latest, at);
    }

    /// Notes that activity up to `at` is in the store.
    pub(super) fn written(&self, id: &SessionId, at: UnixMillis) {
        if let Some(seen) = self.shard(id).read().get(id) {
            raise(&seen.written, at);
        }
    }

    /// The later of the stored and the remembered activity.
    pub(super) fn last_active(&self, session: &Session) -> UnixMillis {
        self.shard(&session.id)
            .read()
            .get(&session.id)
            .map_or(session.last_active_at, |s| s.latest().max(session.last_active_at))
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.shard(id).write().remove(id);
    }

    /// Sessions with activity not yet written whose last write is due
    /// ([`due_after`]) at `now` (`None`: every one). Drops the
    /// sessions whose activity is all written.
    fn unwritten(&self, now: Option<UnixMillis>) -> Vec<(SessionId, UnixMillis)> {
        let mut unwritten = Vec::new();
        for shard in self.shards.iter() {
            shard.write().retain(|id, seen| {
                let (latest, written) = (seen.latest(), seen.written());
                let due = now.is_none_or(|now| now.0.saturating_sub(written.0) >= seen.due_after);
                if latest > written && due {
                    unwritten.push((id.clone(), latest));
                }
                !seen.is_written()
            });
        }
        unwritten
    }
}

impl Service {
    /// Writes every remembered activity the store has not seen yet, as
    /// shutdown does. Answers how many sessions were written.
    pub async fn flush_activity(&self) -> Result<usize, Error> {
        self.write_activity(self.inner.activity.unwritten(None), SHUTDOWN_FLUSH_BATCH).await
    }

    /// Writes remembered activity of sessions due for writing (their last
    /// write nearly a write interval old: [`due_after`]), as each sweep and
    /// the activity writer do.
    pub(super) async fn flush_stale_activity(&self) -> Result<usize, Error> {
        self.write_activity(self.inner.activity.unwritten(Some(self.now())), FLUSH_BATCH).await
    }

    async fn write_activity(&self, unwritten: Vec<(SessionId, UnixMillis)>, size: usize) -> Result<usize, Error> {
        let count = unwritten.len();
        for batch in unwritten.chunks(size) {
            self.stores().sessions.record_activities(batch).await?;
            for (id, at) in batch {
                self.inner.activity.written(id, *at);
            }
        }
        Ok(count)
    }

    /// Writes activity that calls found due, off their path, until
    /// sessiond shuts down (shutdown then writes the rest). A failed write
    /// leaves the activity remembered for the next attempt: a full disk or
    /// an unreachable store does not fail reads.
    pub async fn run_activity_writer(self) {
        let mut stopping = self.stopping();
        loop {
            tokio::select! {
                () = self.inner.activity_due.gathered() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            if let Err(err) = self.flush_stale_activity().await {
                const LINE: &str = "activity not written";
                let kind = throttle::error_kind(&err);
                if let Some(Admitted { repeated }) = throttle::admit(Cause::new(tracing::Level::WARN, LINE, kind)) {
                    let source = std::error::Error::source(&err);
                    tracing::warn!(error = %err, source = ?source, cause = kind, repeated, "{LINE}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionKind;
    use crate::store::fixtures::{T0, session};

    const INTERVAL: Duration = Duration::from_millis(100);

    fn at(ms: i64) -> UnixMillis {
        UnixMillis(T0.0 + ms)
    }

    fn len(tracker: &ActivityTracker) -> usize {
        tracker.shards.iter().map(|shard| shard.read().len()).sum()
    }

    #[test]
    fn activity_is_remembered_until_written_and_then_dropped() {
        let tracker = ActivityTracker::default();
        let alice = session(SessionKind::WebUser, None, T0);
        assert_eq!(tracker.observe(&alice), T0);
        tracker.record(&alice, at(10), INTERVAL);
        assert_eq!(tracker.observe(&alice), at(10));
        assert_eq!(tracker.last_active(&alice), at(10));

        // Due 12.5 ms early (an eighth of the interval), for the writer's
        // gathering, counted in whole milliseconds.
        assert_eq!(tracker.unwritten(Some(at(86))), [], "not yet due");
        assert_eq!(tracker.unwritten(Some(at(87))), [(alice.id.clone(), at(10))], "last written at creation");
        tracker.written(&alice.id, at(10));
        assert_eq!(tracker.unwritten(None), []);
        assert_eq!(len(&tracker), 0, "nothing left that the store lacks");
        assert_eq!(tracker.last_active(&alice), T0, "the store's value, which is at(10) by now");
    }

    #[test]
    fn activity_recorded_after_its_entry_was_dropped_is_kept() {
        let tracker = ActivityTracker::default();
        let alice = session(SessionKind::WebUser, None, T0);
        tracker.record(&alice, at(10), INTERVAL);
        tracker.written(&alice.id, at(10));
        let mut reread = alice.clone();
        reread.last_active_at = at(10);

        // A call observes the written entry, a flush drops it, the call records.
        assert_eq!(tracker.observe(&reread), at(10));
        tracker.unwritten(None);
        tracker.record(&reread, at(20), INTERVAL);
        assert_eq!(tracker.unwritten(None), [(alice.id.clone(), at(20))]);
    }

    #[test]
    fn the_store_having_newer_activity_makes_an_entry_written() {
        let tracker = ActivityTracker::default();
        let alice = session(SessionKind::WebUser, None, T0);
        tracker.record(&alice, at(10), INTERVAL);
        let mut written_elsewhere = alice.clone();
        written_elsewhere.last_active_at = at(30);
        assert_eq!(tracker.observe(&written_elsewhere), at(30));
        assert_eq!(tracker.unwritten(None), []);
    }

    #[test]
    fn a_visit_sees_what_observe_sees_and_records_only_what_it_decides() {
        let tracker = ActivityTracker::default();
        let alice = session(SessionKind::WebUser, None, T0);
        assert_eq!(tracker.visit(&alice.id, alice.last_active_at, Err::<(UnixMillis, Duration), _>), Err(T0));
        assert_eq!(len(&tracker), 0, "a refused visit records nothing");
        tracker.visit(&alice.id, alice.last_active_at, |_| Ok::<_, ()>((at(10), INTERVAL))).unwrap();
        assert_eq!(tracker.visit(&alice.id, alice.last_active_at, Err::<(UnixMillis, Duration), _>), Err(at(10)));
        tracker.visit(&alice.id, alice.last_active_at, |_| Ok::<_, ()>((at(20), INTERVAL))).unwrap();
        assert_eq!(tracker.unwritten(Some(at(100))), [(alice.id.clone(), at(20))], "written at creation, 100 ms ago");
    }

    #[test]
    fn an_ended_session_is_forgotten_with_its_unwritten_activity() {
        let tracker = ActivityTracker::default();
        let alice = session(SessionKind::WebUser, None, T0);
        tracker.record(&alice, at(10), INTERVAL);
        tracker.forget(&alice.id);
        assert_eq!(tracker.unwritten(None), []);
        assert_eq!(tracker.last_active(&alice), T0);
    }

    #[test]
    fn a_session_found_due_and_gathered_is_written_within_its_write_interval() {
        for interval in [Duration::from_millis(8), INTERVAL, Duration::from_secs(1), Duration::from_secs(30)] {
            let gather = gathering(interval);
            assert!(gather <= GATHER && gather <= interval / 8, "{interval:?}");
            assert_eq!(due_after(interval) + gather, interval);
        }
        assert_eq!(gathering(Duration::from_secs(30)), GATHER);
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_gathers_no_longer_than_the_shortest_gathering_found_due() {
        use tokio::time::Instant;
        let due = std::sync::Arc::new(DueActivity::default());

        due.found(Duration::from_secs(30));
        let started = Instant::now();
        due.gathered().await;
        assert_eq!(started.elapsed(), GATHER, "a long interval: the whole gathering");

        // A session with a 400 ms interval found due 10 ms into a gathering
        // cuts it to 50 ms from the wake-up.
        due.found(Duration::from_secs(30));
        let started = Instant::now();
        let hurry = {
            let due = due.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                due.found(Duration::from_millis(400));
            })
        };
        due.gathered().await;
        hurry.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(50));

        // Collected: the next wake-up gathers afresh.
        due.found(Duration::from_secs(30));
        let started = Instant::now();
        due.gathered().await;
        assert_eq!(started.elapsed(), GATHER);
    }
}
