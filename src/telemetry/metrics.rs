//! The instruments sessiond records, and the one place each is recorded
//! from. Names follow the OpenTelemetry semantic conventions where one
//! exists (`rpc.server.duration`, `db.client.*`), else `sessiond.*`.
//!
//! The instruments are process-wide, like the `tracing` subscriber: they
//! exist once [`super::init`] installed a meter provider, and every
//! function here does nothing before (or without) one, at the cost of one
//! atomic load.
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `rpc.server.duration` (ms) | histogram | `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` |
//! | `db.client.operation.duration` (s) | histogram | `db.system.name`, `db.operation.name`, `error.type` on failure |
//! | `db.client.connection.count` | async up-down counter | `db.client.connection.pool.name`, `db.client.connection.state` (`idle`, `used`) |
//! | `db.client.connection.max` | async up-down counter | `db.client.connection.pool.name` |
//! | `db.client.connection.pending_requests` | async up-down counter | `db.client.connection.pool.name` |
//! | `sessiond.cache.lookups` | counter | `sessiond.cache.result` (`hit`, `miss`) |
//! | `sessiond.sessions.created` | counter | `sessiond.session.kind` |
//! | `sessiond.sessions.ended` | counter | `sessiond.session.kind`, `sessiond.session.end_reason` |
//! | `sessiond.sessions.active` | up-down counter | `sessiond.session.kind` |
//! | `sessiond.sweeper.runs` | counter | `sessiond.sweeper.outcome` (`ok`, `error`) |
//! | `sessiond.sweeper.expired` | counter | |
//!
//! `sessiond.sessions.active` counts the sessions this process opened minus
//! those it ended, since it started: summed over the replicas sharing a
//! store it is exact for what they did together, but sessions opened before
//! the oldest replica started are not in it (a restart starts from zero,
//! and ending sessions of an earlier run, or at crash recovery, takes it
//! below). Counting open sessions in the store would be exact, and a query
//! per scrape.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableUpDownCounter, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::domain::{EndReason, SessionKind};
use crate::store::StoreError;

/// Bucket bounds of `rpc.server.duration`, in milliseconds: most calls
/// answer from the cache in well under one.
const RPC_BOUNDS_MS: [f64; 16] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Bucket bounds of `db.client.operation.duration`, in seconds.
const STORE_BOUNDS_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Connection pools observed by the `db.client.connection.*` instruments.
static POOLS: Mutex<Vec<WatchedPool>> = Mutex::new(Vec::new());

/// The instruments, once a meter provider is installed.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Creates the instruments on `provider`. Only the first call counts.
pub(super) fn install(provider: &SdkMeterProvider) {
    let _ = METRICS.set(Metrics::new(&provider.meter("sessiond")));
}

/// Every instrument of sessiond.
#[derive(Debug)]
pub struct Metrics {
    rpc_duration: Histogram<f64>,
    store_duration: Histogram<f64>,
    cache_lookups: Counter<u64>,
    sessions_created: Counter<u64>,
    sessions_ended: Counter<u64>,
    sessions_active: UpDownCounter<i64>,
    sweeper_runs: Counter<u64>,
    sweeper_expired: Counter<u64>,
    /// Observed on each collection, from [`POOLS`].
    _pools: [ObservableUpDownCounter<i64>; 3],
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("Duration of inbound RPCs, until the last message or the status is sent")
                .with_boundaries(RPC_BOUNDS_MS.to_vec())
                .build(),
            store_duration: meter
                .f64_histogram("db.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of the store's operations (cache misses and writes)")
                .with_boundaries(STORE_BOUNDS_S.to_vec())
                .build(),
            cache_lookups: meter
                .u64_counter("sessiond.cache.lookups")
                .with_description("Session lookups answered by the in-memory cache (hit) or the store (miss)")
                .build(),
            sessions_created: meter
                .u64_counter("sessiond.sessions.created")
                .with_description("Sessions created")
                .build(),
            sessions_ended: meter
                .u64_counter("sessiond.sessions.ended")
                .with_description("Sessions ended, by reason")
                .build(),
            sessions_active: meter
                .i64_up_down_counter("sessiond.sessions.active")
                .with_description("Sessions this process created minus those it ended since it started")
                .build(),
            sweeper_runs: meter
                .u64_counter("sessiond.sweeper.runs")
                .with_description("Sweeps of expired sessions")
                .build(),
            sweeper_expired: meter
                .u64_counter("sessiond.sweeper.expired")
                .with_description("Sessions the sweeper ended as expired")
                .build(),
            _pools: pool_instruments(meter),
        }
    }

    /// Records one finished RPC; `attributes` are the RPC conventions'.
    pub fn rpc_finished(&self, elapsed: Duration, attributes: &[KeyValue]) {
        self.rpc_duration.record(elapsed.as_secs_f64() * 1000.0, attributes);
    }
}

/// A session lookup answered by the cache (`hit`) or the store behind it.
pub fn cache_lookup(hit: bool) {
    super::tally::cache_lookup(hit);
    if let Some(metrics) = get() {
        metrics.cache_lookups.add(1, &[KeyValue::new("sessiond.cache.result", if hit { "hit" } else { "miss" })]);
    }
}

/// One store operation took `elapsed`, and failed with `error` if any.
pub fn store_operation(system: &'static str, operation: &'static str, elapsed: Duration, error: Option<&StoreError>) {
    let Some(metrics) = get() else { return };
    let system = KeyValue::new("db.system.name", system);
    let operation = KeyValue::new("db.operation.name", operation);
    let seconds = elapsed.as_secs_f64();
    match error.map(store_error_type) {
        None => metrics.store_duration.record(seconds, &[system, operation]),
        Some(kind) => metrics.store_duration.record(seconds, &[system, operation, KeyValue::new("error.type", kind)]),
    }
}

/// A store error's kind: the `error.type` of the store's metrics, and
/// what tells its failures apart in the logs.
pub fn store_error_type(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound => "not_found",
        StoreError::Ended(_) => "ended",
        StoreError::Conflict { .. } => "conflict",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Full(_) => "full",
        StoreError::Internal(_) => "internal",
    }
}

/// A session was created.
pub fn session_created(kind: SessionKind) {
    if let Some(metrics) = get() {
        let kind = [KeyValue::new("sessiond.session.kind", kind.as_str())];
        metrics.sessions_created.add(1, &kind);
        metrics.sessions_active.add(1, &kind);
    }
}

/// A session ended (by this call: ending an ended one again is no end).
pub fn session_ended(kind: SessionKind, reason: EndReason) {
    if let Some(metrics) = get() {
        let kind = KeyValue::new("sessiond.session.kind", kind.as_str());
        metrics.sessions_active.add(-1, std::slice::from_ref(&kind));
        metrics.sessions_ended.add(1, &[kind, KeyValue::new("sessiond.session.end_reason", reason.as_str())]);
    }
}

/// A sweep finished, having ended `expired` sessions, or failed (`None`).
pub fn sweep_finished(expired: Option<usize>) {
    if let Some(metrics) = get() {
        let outcome = if expired.is_some() { "ok" } else { "error" };
        metrics.sweeper_runs.add(1, &[KeyValue::new("sessiond.sweeper.outcome", outcome)]);
        metrics.sweeper_expired.add(expired.unwrap_or(0) as u64, &[]);
    }
}

/// How full a connection pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections the pool may open.
    pub max: usize,
    /// Connections open now, in use or idle.
    pub open: usize,
    /// Open connections not in use.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

struct WatchedPool {
    name: &'static str,
    usage: Box<dyn Fn() -> Option<PoolUsage> + Send + Sync>,
}

/// Reports a connection pool in the `db.client.connection.*` metrics from
/// now on. `usage` answers `None` once the pool is gone, which forgets it.
/// Does nothing without metrics.
pub fn observe_pool(name: &'static str, usage: impl Fn() -> Option<PoolUsage> + Send + Sync + 'static) {
    if get().is_some() {
        lock_pools().push(WatchedPool { name, usage: Box::new(usage) });
    }
}

fn lock_pools() -> std::sync::MutexGuard<'static, Vec<WatchedPool>> {
    // The list stays whole even if a reader panicked: entries are pushed
    // and removed in one step.
    POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Each live pool's usage; forgets pools that are gone.
fn pool_usages() -> Vec<(&'static str, PoolUsage)> {
    let mut pools = lock_pools();
    let mut usages = Vec::with_capacity(pools.len());
    pools.retain(|pool| match (pool.usage)() {
        Some(usage) => {
            usages.push((pool.name, usage));
            true
        }
        None => false,
    });
    usages
}

fn pool_instruments(meter: &Meter) -> [ObservableUpDownCounter<i64>; 3] {
    const POOL: &str = "db.client.connection.pool.name";
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    [
        meter
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_description("Connections of the store's pool, by state")
            .with_callback(move |observer| {
                for (name, usage) in pool_usages() {
                    let idle = usage.idle.min(usage.open);
                    let state = "db.client.connection.state";
                    observer.observe(count(idle), &[KeyValue::new(POOL, name), KeyValue::new(state, "idle")]);
                    observer
                        .observe(count(usage.open - idle), &[KeyValue::new(POOL, name), KeyValue::new(state, "used")]);
                }
            })
            .build(),
        meter
            .i64_observable_up_down_counter("db.client.connection.max")
            .with_description("Connections the store's pool may open")
            .with_callback(move |observer| {
                for (name, usage) in pool_usages() {
                    observer.observe(count(usage.max), &[KeyValue::new(POOL, name)]);
                }
            })
            .build(),
        meter
            .i64_observable_up_down_counter("db.client.connection.pending_requests")
            .with_description("Callers waiting for a connection of the store's pool")
            .with_callback(move |observer| {
                for (name, usage) in pool_usages() {
                    observer.observe(count(usage.waiting), &[KeyValue::new(POOL, name)]);
                }
            })
            .build(),
    ]
}
