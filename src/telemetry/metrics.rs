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
//! | `rpc.server.call.duration` (s) | histogram | `rpc.system`, `rpc.service`, `rpc.method`, `rpc.response.status_code` (the code's name, `OK`, `UNAVAILABLE`) |
//! | `sessiond.calls.in_flight` | async up-down counter | |
//! | `sessiond.calls.limit` | async up-down counter | |
//! | `sessiond.calls.shed` | counter | `reason` (the refusal's ErrorInfo reason: `OVERLOADED`, `KEY_OVERLOADED`, `TENANT_OVERLOADED`, `RATE_LIMITED`, `KEY_STREAM_QUOTA`, `TENANT_SESSION_QUOTA`) |
//! | `db.client.operation.duration` (s) | histogram | `db.system.name`, `db.operation.name`, `error.type` on failure |
//! | `db.client.connection.count` | async up-down counter | `db.client.connection.pool.name`, `db.client.connection.state` (`idle`, `used`) |
//! | `db.client.connection.max` | async up-down counter | `db.client.connection.pool.name` |
//! | `db.client.connection.pending_requests` | async up-down counter | `db.client.connection.pool.name` |
//! | `db.client.connection.wait_time` (s) | histogram | `db.client.connection.pool.name` |
//! | `sessiond.cache.lookups` | counter | `sessiond.cache.result` (`hit`, `miss`) |
//! | `sessiond.sessions.created` | counter | `sessiond.session.kind` |
//! | `sessiond.sessions.ended` | counter | `sessiond.session.kind`, `sessiond.session.end_reason` |
//! | `sessiond.sessions.open` | async gauge | `sessiond.session.kind` |
//! | `sessiond.sweeper.runs` | counter | `sessiond.sweeper.outcome` (`ok`, `error`) |
//! | `sessiond.sweeper.expired` | counter | |
//! | `sessiond.sweeper.last_success` (s) | async gauge | |
//! | `sessiond.sweeper.lag` (s) | async gauge | |
//! | `sessiond.events.lag` (s) | histogram | |
//! | `sessiond.notifications.lag` (s) | histogram | |
//! | `sessiond.tls.certificate.not_after` (s) | async gauge | |
//! | `process.*`, `sessiond.runtime.*` | async | see [`super::process`] |
//!
//! `sessiond.sessions.open` is sampled from the store by the sweeper (at
//! most every [`OPEN_SESSIONS_SAMPLE`]): every replica sharing a store
//! reports the same fleet-wide count, across tenants, restarts included.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge, ObservableUpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::domain::{EndReason, SessionKind};
use crate::grpc::permits::Limit;
use crate::store::StoreError;

/// Bucket bounds of every duration, in seconds: most calls answer from
/// the cache in well under a millisecond.
const BOUNDS_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// How often `sessiond.sessions.open` is counted in the store at most.
pub const OPEN_SESSIONS_SAMPLE: Duration = Duration::from_secs(30);

/// Open sessions by kind, as last counted in the store, and when.
static OPEN_SESSIONS: Mutex<Option<(std::time::Instant, Vec<(String, u64)>)>> = Mutex::new(None);

/// The last successful sweep, in milliseconds since the epoch; 0: none yet.
static LAST_SWEEP_MS: AtomicI64 = AtomicI64::new(0);

/// The served certificate's end of validity, in seconds since the epoch;
/// `i64::MIN`: no certificate.
static CERTIFICATE_NOT_AFTER: AtomicI64 = AtomicI64::new(i64::MIN);

/// The call limits observed by `sessiond.calls.*`: their counters and
/// sizes, forgotten once dropped.
static CALL_LIMITS: Mutex<Vec<(Weak<Limit>, usize)>> = Mutex::new(Vec::new());

/// Connection pools observed by the `db.client.connection.*` instruments.
static POOLS: Mutex<Vec<WatchedPool>> = Mutex::new(Vec::new());

/// The instruments, once a meter provider is installed.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Creates the instruments on `provider`. Only the first call counts.
pub(super) fn install(provider: &SdkMeterProvider) {
    started_at();
    let meter = provider.meter("sessiond");
    super::message_metrics::install(&meter);
    let _ = METRICS.set(Metrics::new(&meter, tokio::runtime::Handle::try_current().ok()));
}

/// Every instrument of sessiond.
#[derive(Debug)]
pub struct Metrics {
    rpc_duration: Histogram<f64>,
    calls_shed: Counter<u64>,
    store_duration: Histogram<f64>,
    pool_wait: Histogram<f64>,
    cache_lookups: Counter<u64>,
    sessions_created: Counter<u64>,
    sessions_ended: Counter<u64>,
    sweeper_runs: Counter<u64>,
    sweeper_expired: Counter<u64>,
    events_lag: Histogram<f64>,
    notifications_lag: Histogram<f64>,
    /// Observed on each collection, from [`POOLS`].
    _pools: [ObservableUpDownCounter<i64>; 3],
    /// Observed on each collection, from the statics above.
    _observed: Observed,
    _process: super::process::Instruments,
}

/// The instruments observed from this module's statics.
#[derive(Debug)]
struct Observed {
    _calls: [ObservableUpDownCounter<i64>; 2],
    _gauges: [ObservableGauge<f64>; 3],
    _open: ObservableGauge<u64>,
}

impl Metrics {
    fn new(meter: &Meter, runtime: Option<tokio::runtime::Handle>) -> Self {
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(BOUNDS_S.to_vec())
                .build()
        };
        Self {
            rpc_duration: seconds(
                "rpc.server.call.duration",
                "Duration of inbound RPCs, until the last message or the status is sent",
            ),
            calls_shed: meter
                .u64_counter("sessiond.calls.shed")
                .with_description(
                    "Calls refused with RESOURCE_EXHAUSTED by a limit on calls, streams or open sessions, by reason",
                )
                .build(),
            store_duration: seconds(
                "db.client.operation.duration",
                "Duration of the store's operations (cache misses and writes)",
            ),
            pool_wait: seconds("db.client.connection.wait_time", "Time it took to obtain a connection from the pool"),
            events_lag: seconds(
                "sessiond.events.lag",
                "Time from an event recorded by another replica to its delivery to this replica's watchers",
            ),
            notifications_lag: seconds(
                "sessiond.notifications.lag",
                "Round trip of a Postgres notification from this replica back to itself (LISTEN/NOTIFY delay)",
            ),
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
            sweeper_runs: meter
                .u64_counter("sessiond.sweeper.runs")
                .with_description("Sweeps of expired sessions")
                .build(),
            sweeper_expired: meter
                .u64_counter("sessiond.sweeper.expired")
                .with_description("Sessions the sweeper ended as expired")
                .build(),
            _pools: pool_instruments(meter),
            _observed: observed_instruments(meter),
            _process: super::process::instruments(meter, runtime),
        }
    }

    /// Records one finished RPC; `attributes` are the RPC conventions'.
    pub fn rpc_finished(&self, elapsed: Duration, attributes: &[KeyValue]) {
        self.rpc_duration.record(elapsed.as_secs_f64(), attributes);
    }
}

/// Reports a call limit's calls in progress (`max` less the free permits)
/// in `sessiond.calls.in_flight` from now on, until the semaphore is
/// dropped.
pub fn observe_call_limit(permits: &Arc<Limit>, max: usize) {
    lock(&CALL_LIMITS).push((Arc::downgrade(permits), max));
}

/// A call was refused RESOURCE_EXHAUSTED by a limit, `reason` its
/// ErrorInfo reason: OVERLOADED (--max-concurrent-calls), KEY_OVERLOADED,
/// TENANT_OVERLOADED, RATE_LIMITED, KEY_STREAM_QUOTA, TENANT_SESSION_QUOTA
/// or TENANT_LOG_QUOTA.
pub fn call_shed(reason: &'static str) {
    if let Some(metrics) = get() {
        metrics.calls_shed.add(1, &[KeyValue::new("reason", reason)]);
    }
}

/// A pooled connection took `elapsed` to obtain.
pub fn pool_wait(pool: &'static str, elapsed: Duration) {
    if let Some(metrics) = get() {
        metrics.pool_wait.record(elapsed.as_secs_f64(), &[KeyValue::new("db.client.connection.pool.name", pool)]);
    }
}

/// An event recorded by another replica reached this one `lag` after it
/// was recorded.
pub fn event_delivered(lag: Duration) {
    if let Some(metrics) = get() {
        metrics.events_lag.record(lag.as_secs_f64(), &[]);
    }
}

/// A notification this replica sent came back after `lag`.
pub fn notification_round_trip(lag: Duration) {
    if let Some(metrics) = get() {
        metrics.notifications_lag.record(lag.as_secs_f64(), &[]);
    }
}

/// Whether the open sessions should be counted again: metrics are on and
/// the last count is [`OPEN_SESSIONS_SAMPLE`] old.
pub fn open_sessions_due() -> bool {
    get().is_some() && lock(&OPEN_SESSIONS).as_ref().is_none_or(|(at, _)| at.elapsed() >= OPEN_SESSIONS_SAMPLE)
}

/// The open sessions by kind, as just counted in the store; every kind
/// the count left out has none.
pub fn open_sessions_counted(by_kind: Vec<(String, u64)>) {
    let counts = SessionKind::ALL
        .iter()
        .map(|kind| {
            let open = by_kind.iter().find(|(name, _)| name == kind.as_str()).map_or(0, |(_, n)| *n);
            (kind.as_str().to_owned(), open)
        })
        .collect();
    *lock(&OPEN_SESSIONS) = Some((std::time::Instant::now(), counts));
}

/// The certificate now served ends its validity at `not_after` (seconds
/// since the epoch).
pub fn certificate_loaded(not_after: i64) {
    CERTIFICATE_NOT_AFTER.store(not_after, Ordering::Relaxed);
}

fn lock<T>(mutex: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    // Each value is replaced or pushed in one step: whole even if a holder
    // panicked.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn observed_instruments(meter: &Meter) -> Observed {
    let limits = || {
        let mut limits = lock(&CALL_LIMITS);
        limits.retain(|(permits, _)| permits.strong_count() > 0);
        limits.iter().filter_map(|(p, max)| p.upgrade().map(|p| (p.available(), *max))).collect::<Vec<_>>()
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Observed {
        _calls: [
            meter
                .i64_observable_up_down_counter("sessiond.calls.in_flight")
                .with_description(
                    "Calls in progress, counted against --max-concurrent-calls (health and reflection not)",
                )
                .with_callback(move |observer| {
                    let in_flight = limits().iter().map(|(free, max)| max.saturating_sub(*free)).sum();
                    observer.observe(count(in_flight), &[]);
                })
                .build(),
            meter
                .i64_observable_up_down_counter("sessiond.calls.limit")
                .with_description("--max-concurrent-calls: calls in progress past which calls are shed")
                .with_callback(move |observer| {
                    observer.observe(count(limits().iter().map(|(_, max)| *max).sum()), &[]);
                })
                .build(),
        ],
        _gauges: [
            meter
                .f64_observable_gauge("sessiond.sweeper.last_success")
                .with_unit("s")
                .with_description("When the last sweep succeeded, in seconds since the Unix epoch (0: none yet)")
                .with_callback(|observer| {
                    observer.observe(LAST_SWEEP_MS.load(Ordering::Relaxed) as f64 / 1000.0, &[]);
                })
                .build(),
            meter
                .f64_observable_gauge("sessiond.sweeper.lag")
                .with_unit("s")
                .with_description("Time since the last successful sweep (since start-up before the first)")
                .with_callback(|observer| {
                    let last = LAST_SWEEP_MS.load(Ordering::Relaxed) as f64 / 1000.0;
                    let since = if last > 0.0 { last } else { started_at() };
                    observer.observe((unix_now() - since).max(0.0), &[]);
                })
                .build(),
            meter
                .f64_observable_gauge("sessiond.tls.certificate.not_after")
                .with_unit("s")
                .with_description("When the served TLS certificate expires, in seconds since the Unix epoch")
                .with_callback(|observer| {
                    let not_after = CERTIFICATE_NOT_AFTER.load(Ordering::Relaxed);
                    if not_after != i64::MIN {
                        observer.observe(not_after as f64, &[]);
                    }
                })
                .build(),
        ],
        _open: meter
            .u64_observable_gauge("sessiond.sessions.open")
            .with_description("Open sessions in the store, across tenants and replicas, by kind (sampled)")
            .with_callback(|observer| {
                if let Some((_, by_kind)) = lock(&OPEN_SESSIONS).as_ref() {
                    for (kind, count) in by_kind {
                        observer.observe(*count, &[KeyValue::new("sessiond.session.kind", kind.clone())]);
                    }
                }
            })
            .build(),
    }
}

/// When this process installed its metrics, in seconds since the epoch.
fn started_at() -> f64 {
    static STARTED: OnceLock<f64> = OnceLock::new();
    *STARTED.get_or_init(unix_now)
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
        StoreError::LogFull { .. } => "log_full",
        StoreError::TenantFull { .. } => "tenant_full",
        StoreError::TenantLogFull { .. } => "tenant_log_full",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Full(_) => "full",
        StoreError::Internal(_) => "internal",
    }
}

/// A session was created.
pub fn session_created(kind: SessionKind) {
    if let Some(metrics) = get() {
        metrics.sessions_created.add(1, &[KeyValue::new("sessiond.session.kind", kind.as_str())]);
    }
}

/// A session ended (by this call: ending an ended one again is no end).
pub fn session_ended(kind: SessionKind, reason: EndReason) {
    if let Some(metrics) = get() {
        let kind = KeyValue::new("sessiond.session.kind", kind.as_str());
        metrics.sessions_ended.add(1, &[kind, KeyValue::new("sessiond.session.end_reason", reason.as_str())]);
    }
}

/// A sweep finished, having ended `expired` sessions, or failed (`None`).
pub fn sweep_finished(expired: Option<usize>) {
    if let Some(metrics) = get() {
        let outcome = if expired.is_some() { "ok" } else { "error" };
        if expired.is_some() {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            LAST_SWEEP_MS.store(i64::try_from(now_ms).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
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
