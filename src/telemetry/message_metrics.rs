//! The instruments of channel messages, installed with the others
//! (`metrics::install`) and, like them, doing nothing without a meter
//! provider.
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `sessiond.messages.posted` | counter | `sessiond.message.scope` (`local`, `global`) |
//! | `sessiond.messages.delivered` | counter | |
//! | `sessiond.messages.dropped` | counter | `sessiond.message.drop_reason` (`too_slow`) |
//! | `sessiond.messages.subscribers` | up-down counter | |
//! | `sessiond.messages.lag` (s) | histogram | |
//!
//! `delivered` counts messages written to subscribers' streams; `lag` is
//! the time from a post's acceptance to that write, on this replica's
//! clock (across replicas, clock skew adds to it). A subscription tallies
//! its deliveries in [`Deliveries`] and adds them to `delivered` in one
//! call per batch: when its stream has nothing more to send for now, every
//! [`DELIVERED_BATCH`] deliveries, and when it ends. The lag is recorded
//! for every delivery, as it is written.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

/// Bucket bounds of `sessiond.messages.lag`, in seconds, like every
/// duration sessiond measures.
const LAG_BOUNDS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static METRICS: OnceLock<MessageMetrics> = OnceLock::new();

#[derive(Debug)]
struct MessageMetrics {
    posted: Counter<u64>,
    delivered: Counter<u64>,
    dropped: Counter<u64>,
    subscribers: UpDownCounter<i64>,
    lag: Histogram<f64>,
}

/// Creates the instruments on `meter`. Only the first call counts.
pub(super) fn install(meter: &Meter) {
    let _ = METRICS.set(MessageMetrics {
        posted: meter.u64_counter("sessiond.messages.posted").with_description("Channel messages posted").build(),
        delivered: meter
            .u64_counter("sessiond.messages.delivered")
            .with_description("Channel messages written to subscribers' streams")
            .build(),
        dropped: meter
            .u64_counter("sessiond.messages.dropped")
            .with_description("Subscriptions cut off, by reason")
            .build(),
        subscribers: meter
            .i64_up_down_counter("sessiond.messages.subscribers")
            .with_description("Subscriptions this replica serves")
            .build(),
        lag: meter
            .f64_histogram("sessiond.messages.lag")
            .with_unit("s")
            .with_description("Time from a post's acceptance to its delivery to a subscriber")
            .with_boundaries(LAG_BOUNDS_SECONDS.to_vec())
            .build(),
    });
}

/// A message was posted with `scope`.
pub fn posted(scope: &'static str) {
    if let Some(metrics) = METRICS.get() {
        metrics.posted.add(1, &[KeyValue::new("sessiond.message.scope", scope)]);
    }
}

/// Deliveries a subscription tallies at most before adding them to
/// `sessiond.messages.delivered`.
pub const DELIVERED_BATCH: u64 = 64;

/// One subscription's deliveries not yet added to
/// `sessiond.messages.delivered`; added when [`flush`](Self::flush)ed,
/// every [`DELIVERED_BATCH`], and when dropped.
#[derive(Debug, Default)]
pub struct Deliveries {
    unflushed: u64,
}

impl Deliveries {
    /// A message was written to the subscriber's stream; `lag` (the time
    /// since its post) is asked for only when there are instruments to
    /// record it.
    pub fn delivered(&mut self, lag: impl FnOnce() -> std::time::Duration) {
        let Some(metrics) = METRICS.get() else { return };
        metrics.lag.record(lag().as_secs_f64(), &[]);
        self.unflushed += 1;
        if self.unflushed >= DELIVERED_BATCH {
            self.flush();
        }
    }

    /// Adds the deliveries tallied so far to the counter.
    pub fn flush(&mut self) {
        if self.unflushed == 0 {
            return;
        }
        if let Some(metrics) = METRICS.get() {
            metrics.delivered.add(self.unflushed, &[]);
        }
        self.unflushed = 0;
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A subscription was cut off.
pub fn dropped(reason: &'static str) {
    if let Some(metrics) = METRICS.get() {
        metrics.dropped.add(1, &[KeyValue::new("sessiond.message.drop_reason", reason)]);
    }
}

/// Subscriptions began (`1`) or ended (`-1`).
pub fn subscribers(change: i64) {
    if let Some(metrics) = METRICS.get() {
        metrics.subscribers.add(change, &[]);
    }
}
