//! The sweeper: ends sessions past their idle timeout or lifetime, and
//! purges ended sessions, their logs and old events after retention.
//!
//! The store's view of activity may lag the in-memory one (see
//! `activity`), and its expiry index lags the activity it has (written
//! apart from the session, see `SessionRecords::move_expiries`): a session
//! the store calls due but that was used since has its expiry moved
//! instead of being ended.
//!
//! Due sessions are read and ended in batches of [`SWEEP_BATCH`], each
//! batch in one store transaction per writer, so mass expiry costs a
//! transaction per batch rather than per session; every session still gets
//! its own `EXPIRED` event, and of replicas sweeping at once exactly one
//! ends each session.

use std::time::Duration;

use crate::domain::{Expiry, SessionId};
use crate::service::Error;
use crate::store::Purged;
use crate::telemetry::throttle::{self, Admitted, Cause};

use super::Service;

/// Sessions examined per store query, and ended together: one store
/// transaction (per writer) and one notification to other replicas ends
/// them all, with one event each.
const SWEEP_BATCH: usize = 1_000;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: Vec<SessionId>,
    pub purged: Purged,
    /// Sessions whose activity was written from memory.
    pub flushed: usize,
}

impl Service {
    /// Writes activity held in memory for `activity_flush`, ends every due
    /// session and purges what retention lets go.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sweep_once(&self) -> Result<SweepReport, Error> {
        let mut report = SweepReport { flushed: self.flush_stale_activity().await?, ..SweepReport::default() };
        loop {
            let now = self.now();
            let due = self.stores().sessions.due_sessions(now, SWEEP_BATCH).await?;
            let count = due.len();
            let mut ending = Vec::new();
            let mut used = Vec::new();
            for session in &due {
                match session.expiry(self.last_active(session), now) {
                    Expiry::Due(reason) => ending.push((session, reason)),
                    // Used since its stored expiry last moved: activity
                    // written apart (the session's `last_active_at` as
                    // read), or held in memory.
                    Expiry::Open { .. } => used.push((session.id.clone(), self.inner.activity.last_active(session))),
                }
            }
            // One transaction (per writer) for the batch's ends, one to move
            // the expiry of those used since.
            report.expired.extend(self.end_many(&ending).await?);
            let moved = if used.is_empty() { 0 } else { self.stores().sessions.move_expiries(&used).await? };
            for (id, at) in &used {
                self.inner.activity.written(id, *at);
            }
            // Sessions open only by the allowance for other replicas'
            // unwritten activity have no expiry to move yet: they are left
            // for a later sweep.
            if count < SWEEP_BATCH || (ending.is_empty() && moved == 0) {
                break;
            }
        }
        let now = self.now();
        let config = &self.inner.config;
        let (ended_before, events_before) = (now - config.retention, now - config.event_retention);
        report.purged =
            self.stores().sessions.purge(ended_before, events_before, now - config.idempotency_window).await?;
        Ok(report)
    }

    /// Sweeps every `interval` until sessiond shuts down.
    pub async fn run_sweeper(self, interval: Duration) {
        let mut stopping = self.stopping();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            let swept = self.sweep_once().await;
            if crate::telemetry::metrics::open_sessions_due() {
                // A failed count keeps the last one; the sweep's own
                // failure, if the store is down, is what gets logged.
                if let Ok(by_kind) = self.stores().sessions.count_open_sessions().await {
                    crate::telemetry::metrics::open_sessions_counted(by_kind);
                }
            }
            crate::telemetry::metrics::sweep_finished(swept.as_ref().ok().map(|report| report.expired.len()));
            match swept {
                Ok(report) if !report.expired.is_empty() || report.purged != Purged::default() => {
                    tracing::info!(
                        expired = report.expired.len(),
                        purged_sessions = report.purged.sessions,
                        purged_events = report.purged.events,
                        "sweep"
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    const LINE: &str = "sweep failed";
                    let kind = throttle::error_kind(&err);
                    if let Some(Admitted { repeated }) = throttle::admit(Cause::new(tracing::Level::WARN, LINE, kind)) {
                        let source = std::error::Error::source(&err);
                        tracing::warn!(error = %err, source = ?source, cause = kind, repeated, "{LINE}");
                    }
                }
            }
        }
    }
}
