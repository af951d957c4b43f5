//! Posts per second per API key: a token bucket per key of each tenant,
//! holding at most one second's worth, so a key may post `rate` messages
//! at once and then `rate` per second.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::auth::Caller;
use crate::service::Error;

#[derive(Debug)]
pub(super) struct PostRate {
    rate: u32,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PostRate {
    pub(super) fn new(rate: u32) -> Self {
        Self { rate, buckets: Mutex::default() }
    }

    /// Takes one post from the caller's key, or refuses it.
    pub(super) fn admit(&self, caller: &Caller) -> Result<(), Error> {
        self.admit_at(caller, Instant::now())
    }

    fn admit_at(&self, caller: &Caller, now: Instant) -> Result<(), Error> {
        let rate = f64::from(self.rate);
        // A bucket is updated in one step: a panic cannot leave it half-done.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (caller.tenant.as_str().to_owned(), caller.name.clone());
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: rate, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Error::QuotaExceeded {
                subject: "message-post-rate".into(),
                description: format!("an API key may post at most {} messages per second", self.rate),
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_posts_its_rate_at_once_then_waits_for_tokens_and_keys_do_not_share() {
        let rate = PostRate::new(2);
        let mut alice = Caller::open();
        alice.name = "alice".into();
        let bob = Caller::open();
        let start = Instant::now();
        assert!(rate.admit_at(&alice, start).is_ok());
        assert!(rate.admit_at(&alice, start).is_ok());
        assert!(matches!(rate.admit_at(&alice, start), Err(Error::QuotaExceeded { .. })));
        assert!(rate.admit_at(&bob, start).is_ok(), "another key has its own bucket");
        assert!(rate.admit_at(&alice, start + Duration::from_millis(500)).is_ok(), "half a second: one more");
        assert!(rate.admit_at(&alice, start + Duration::from_millis(500)).is_err());
    }
}
