//! [`Limit`]: a number of calls in progress, taken at once or refused,
//! never waited for. The concurrency limits of `limits` and `fairness`
//! are all of this kind: a call over one is answered RESOURCE_EXHAUSTED
//! rather than queued, so a limit needs no wait queue, and taking and
//! giving back a permit are one atomic operation each (a semaphore's
//! release takes its wait queue's lock, on every call).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` holders at once.
#[derive(Debug)]
pub struct Limit {
    in_use: AtomicUsize,
    max: usize,
}

impl Limit {
    pub fn new(max: usize) -> Self {
        Self { in_use: AtomicUsize::new(0), max }
    }

    /// A permit, or `None` when all `max` are held.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.in_use.fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1)).ok()?;
        Some(Permit(self.clone()))
    }

    /// The permits not held now.
    pub fn available(&self) -> usize {
        self.max.saturating_sub(self.in_use.load(Ordering::Relaxed))
    }
}

/// One of a [`Limit`]'s permits, given back when dropped.
#[derive(Debug)]
pub struct Permit(Arc<Limit>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_gives_at_most_its_permits_and_takes_them_back_when_dropped() {
        let limit = Arc::new(Limit::new(2));
        let first = limit.try_acquire().expect("the first");
        let second = limit.try_acquire().expect("the second");
        assert!(limit.try_acquire().is_none(), "a third is refused");
        assert_eq!(limit.available(), 0);
        drop(first);
        assert_eq!(limit.available(), 1);
        let third = limit.try_acquire().expect("a released permit is free again");
        drop((second, third));
        assert_eq!(limit.available(), 2);
    }

    #[test]
    fn a_limit_of_none_refuses_every_call() {
        assert!(Arc::new(Limit::new(0)).try_acquire().is_none());
    }
}
