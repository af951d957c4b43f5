//! Running totals of this process that the web console shows as headline
//! figures: calls answered, calls failed, cache hits and misses. Atomics,
//! counted whether or not metrics are exported, striped by thread: every
//! call adds to two of them, and one atomic written by every call moves
//! its cache line from core to core on each; striped, each thread adds to
//! a line of its own and a read sums the stripes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

static CALLS: Striped = Striped::new();
static FAILED: Striped = Striped::new();
static CACHE_HITS: Striped = Striped::new();
static CACHE_MISSES: Striped = Striped::new();

/// Stripes per total: more than the threads that count at once on most
/// machines, so that two rarely share one.
const STRIPES: usize = 16;

/// One stripe, on a cache line of its own (128 bytes, since prefetchers
/// fetch adjacent 64-byte lines in pairs).
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A total that threads add to on stripes of their own.
struct Striped([Stripe; STRIPES]);

impl Striped {
    const fn new() -> Self {
        Self([const { Stripe(AtomicU64::new(0)) }; STRIPES])
    }

    fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|stripe| stripe.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's stripe: threads take them in turn as they first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

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
    CALLS.add(1);
    if failed {
        FAILED.add(1);
    }
}

/// A session lookup was answered by the cache (`hit`) or the store behind it.
pub fn cache_lookup(hit: bool) {
    if hit { &CACHE_HITS } else { &CACHE_MISSES }.add(1);
}

/// The totals now.
pub fn totals() -> Totals {
    Totals { calls: CALLS.sum(), failed: FAILED.sum(), cache_hits: CACHE_HITS.sum(), cache_misses: CACHE_MISSES.sum() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_is_what_every_thread_added() {
        let total = Striped::new();
        std::thread::scope(|threads| {
            for _ in 0..(STRIPES + 4) {
                threads.spawn(|| (0..1000).for_each(|_| total.add(1)));
            }
        });
        assert_eq!(total.sum(), (STRIPES as u64 + 4) * 1000);
    }
}
