//! Running totals of this process that the web console shows as headline
//! figures: calls answered, calls failed, cache hits and misses. Plain
//! atomics, counted whether or not metrics are exported.

use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
static CACHE_MISSES: AtomicU64 = AtomicU64::new(0);

/// The totals since this process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// gRPC calls answered (health and reflection included).
    pub calls: u64,
    /// Of those, the ones answered with a status other than OK.
    pub failed: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// A gRPC call was answered, with OK or not.
pub fn call_finished(failed: bool) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    if failed {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A session lookup was answered by the cache (`hit`) or the store behind it.
pub fn cache_lookup(hit: bool) {
    if hit { &CACHE_HITS } else { &CACHE_MISSES }.fetch_add(1, Ordering::Relaxed);
}

/// The totals now.
pub fn totals() -> Totals {
    Totals {
        calls: CALLS.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        cache_hits: CACHE_HITS.load(Ordering::Relaxed),
        cache_misses: CACHE_MISSES.load(Ordering::Relaxed),
    }
}
