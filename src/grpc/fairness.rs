//! [`Fairness`]: each caller's share of the server, on top of the global
//! `--max-concurrent-calls`. Every API key and every tenant has its own
//! concurrency limit (a [`Limit`] whose permits a call keeps for its whole
//! life, as the global one) and, when configured, its own rate limit (a
//! token bucket). A call over its key's or its tenant's share is refused
//! at once with RESOURCE_EXHAUSTED, so one busy key cannot take the pool
//! from every other caller. A key may also hold only so many server
//! streams (WatchSessions, FollowLogs, Subscribe) open at once: past that,
//! a new stream is refused with RESOURCE_EXHAUSTED (KEY_STREAM_QUOTA), so
//! long-lived watchers cannot hold the whole of a key's share, nor the
//! store's connections their catch-up reads take.
//!
//! The counters are made when the keys are loaded: one per key entry and
//! one per tenant named in the keys file (an open server has one caller,
//! `anonymous`, of the tenant `default`). A call finds its caller's by
//! [`Caller::slot`], an index: no map, no allocation, one uncontended lock
//! per configured rate limit. A reloaded keys file gets counters of its own
//! ([`Fairness::renewed`]), but a key or tenant it keeps, with the same
//! limit, keeps its counters: calls in progress still count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

use super::permits::{Limit, Permit};
use super::status;
use crate::auth::{ApiKeys, Caller, KeyLimits};

/// Each caller's share, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairnessLimits {
    /// Calls in progress at once per API key, unless its entry says.
    pub max_concurrent_calls_per_key: usize,
    /// Calls in progress at once per tenant, all its keys together.
    pub max_concurrent_calls_per_tenant: usize,
    /// Calls started per second per API key; 0: no limit.
    pub rate_limit_per_key: u32,
    /// Calls started per second per tenant; 0: no limit.
    pub rate_limit_per_tenant: u32,
    /// Server streams open at once per API key, unless its entry says.
    pub max_streams_per_key: usize,
}

/// The counters of every key and tenant, indexed by [`Caller::slot`].
#[derive(Debug)]
pub struct Fairness {
    limits: FairnessLimits,
    keys: Vec<Arc<Share>>,
    tenants: Vec<Arc<Share>>,
    /// The tenant (index in `tenants`) of each key.
    tenant_of: Vec<usize>,
}

/// What one key or one tenant may use.
#[derive(Debug)]
struct Share {
    /// `api-key:<name>` or `tenant:<id>`, for the answer's QuotaFailure.
    subject: String,
    permits: Arc<Limit>,
    max_concurrent_calls: usize,
    /// Calls started per second; 0: no limit.
    rate: u32,
    bucket: Option<Mutex<Bucket>>,
    /// Server streams open at once; 0 for a tenant, whose streams are
    /// counted by key only.
    max_streams: usize,
    streams: Arc<Limit>,
}

/// What a share is made with: two shares with the same limits are
/// interchangeable, so a reload keeps the one in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShareLimits {
    max_concurrent_calls: usize,
    rate: u32,
    max_streams: usize,
}

impl Share {
    fn new(subject: String, limits: ShareLimits) -> Self {
        let ShareLimits { max_concurrent_calls, rate, max_streams } = limits;
        Self {
            subject,
            permits: Arc::new(Limit::new(max_concurrent_calls)),
            max_concurrent_calls,
            rate,
            bucket: (rate > 0).then(|| Mutex::new(Bucket::new(rate, Instant::now()))),
            max_streams,
            streams: Arc::new(Limit::new(max_streams)),
        }
    }

    fn limits(&self) -> ShareLimits {
        ShareLimits { max_concurrent_calls: self.max_concurrent_calls, rate: self.rate, max_streams: self.max_streams }
    }

    /// One call's token, or how long until the next one.
    fn take_token(&self, now: Instant) -> Result<(), Status> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take(now).map_err(|retry| {
            crate::telemetry::metrics::call_shed("RATE_LIMITED");
            status::rate_limited(&self.subject, bucket.rate, retry)
        })
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` kept (a burst of
/// one second's calls).
#[derive(Debug)]
struct Bucket {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        Self { rate, tokens: f64::from(rate), last: now }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// The key's and the tenant's permits of a call under way, and its key's
/// stream permit when it is a server stream: released when its answer ends.
#[derive(Debug)]
pub struct Admitted {
    _key: Option<Permit>,
    _tenant: Option<Permit>,
    _stream: Option<Permit>,
}

impl Fairness {
    /// Counters for every entry of `keys`, or for the one caller of an open
    /// server ([`Caller::open`]) without keys.
    pub fn new(keys: Option<&ApiKeys>, limits: FairnessLimits) -> Self {
        Self::inheriting(keys, limits, |_, _| None)
    }

    /// Counters for a reloaded keys file: a key or a tenant that was in
    /// the previous file keeps its counters when its limits are the same.
    pub fn renewed(&self, keys: Option<&ApiKeys>) -> Self {
        let previous: HashMap<&str, &Arc<Share>> =
            self.keys.iter().chain(&self.tenants).map(|share| (share.subject.as_str(), share)).collect();
        Self::inheriting(keys, self.limits, |subject, limits| {
            previous.get(subject).filter(|kept| kept.limits() == limits).map(|kept| Arc::clone(kept))
        })
    }

    /// Counters for `keys`, each taken from `kept` when it has one.
    fn inheriting(
        keys: Option<&ApiKeys>,
        limits: FairnessLimits,
        kept: impl Fn(&str, ShareLimits) -> Option<Arc<Share>>,
    ) -> Self {
        let share = |subject: String, limits: ShareLimits| {
            kept(&subject, limits).unwrap_or_else(|| Arc::new(Share::new(subject, limits)))
        };
        let open = [(Caller::open(), KeyLimits::default())];
        let callers: Vec<(&Caller, KeyLimits)> = match keys {
            Some(keys) => keys.entries().collect(),
            None => open.iter().map(|(caller, own)| (caller, *own)).collect(),
        };
        let mut tenant_index = HashMap::new();
        let mut fairness = Self { limits, keys: Vec::new(), tenants: Vec::new(), tenant_of: Vec::new() };
        for (slot, (caller, own)) in callers.into_iter().enumerate() {
            debug_assert_eq!(slot, caller.slot, "entries are listed in slot order");
            let tenant = *tenant_index.entry(caller.tenant.as_str().to_owned()).or_insert_with(|| {
                fairness.tenants.push(share(
                    format!("tenant:{}", caller.tenant.as_str()),
                    ShareLimits {
                        max_concurrent_calls: limits.max_concurrent_calls_per_tenant,
                        rate: limits.rate_limit_per_tenant,
                        max_streams: 0,
                    },
                ));
                fairness.tenants.len() - 1
            });
            fairness.keys.push(share(
                format!("api-key:{}", caller.name),
                ShareLimits {
                    max_concurrent_calls: own.max_concurrent_calls.unwrap_or(limits.max_concurrent_calls_per_key),
                    rate: limits.rate_limit_per_key,
                    max_streams: own.max_streams.unwrap_or(limits.max_streams_per_key),
                },
            ));
            fairness.tenant_of.push(tenant);
        }
        fairness
    }

    /// Admits a call of `caller`, a server stream when `stream`, or
    /// refuses it: RATE_LIMITED when its key or tenant has started too many
    /// calls this second, KEY_STREAM_QUOTA when its key has its streams
    /// open, KEY_OVERLOADED or TENANT_OVERLOADED when too many calls are in
    /// progress. Each refusal is counted in `sessiond.calls.shed`.
    pub fn admit(&self, caller: &Caller, now: Instant, stream: bool) -> Result<Admitted, Status> {
        use crate::telemetry::metrics::call_shed;
        // Every caller comes from the keys these counters were made for.
        let (Some(key), Some(&tenant)) = (self.keys.get(caller.slot), self.tenant_of.get(caller.slot)) else {
            return Ok(Admitted { _key: None, _tenant: None, _stream: None });
        };
        let tenant = &self.tenants[tenant];
        key.take_token(now)?;
        tenant.take_token(now)?;
        let stream_permit = match stream {
            false => None,
            true => Some(key.streams.try_acquire().ok_or_else(|| {
                call_shed("KEY_STREAM_QUOTA");
                status::key_stream_quota(&key.subject, key.max_streams)
            })?),
        };
        let key_permit = key.permits.try_acquire().ok_or_else(|| {
            call_shed("KEY_OVERLOADED");
            status::key_overloaded(&key.subject, key.max_concurrent_calls)
        })?;
        let tenant_permit = tenant.permits.try_acquire().ok_or_else(|| {
            call_shed("TENANT_OVERLOADED");
            status::tenant_overloaded(&tenant.subject, tenant.max_concurrent_calls)
        })?;
        Ok(Admitted { _key: Some(key_permit), _tenant: Some(tenant_permit), _stream: stream_permit })
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    const LIMITS: FairnessLimits = FairnessLimits {
        max_concurrent_calls_per_key: 2,
        max_concurrent_calls_per_tenant: 3,
        rate_limit_per_key: 0,
        rate_limit_per_tenant: 0,
        max_streams_per_key: 2,
    };

    fn keys() -> ApiKeys {
        let hash = |k: &str| crate::auth::hash_key(k);
        ApiKeys::parse(&format!(
            "keys:\n  - {{name: a1, tenant: acme, role: service, hash: '{}'}}\n  - {{name: a2, tenant: acme, role: service, hash: '{}', max_concurrent_calls: 5}}\n  - {{name: g, tenant: globex, role: service, hash: '{}'}}",
            hash("k1"),
            hash("k2"),
            hash("k3")
        ))
        .expect("a valid keys file")
    }

    fn reason(status: &Status) -> String {
        use tonic_types::StatusExt as _;
        status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default()
    }

    #[test]
    fn a_key_and_its_tenant_each_get_their_share() {
        let keys = keys();
        let fairness = Fairness::new(Some(&keys), LIMITS);
        let (a1, a2, g) =
            (keys.authenticate("k1").unwrap(), keys.authenticate("k2").unwrap(), keys.authenticate("k3").unwrap());
        let now = Instant::now();
        let held: Vec<_> = (0..2).map(|_| fairness.admit(&a1, now, false).expect("within the key's share")).collect();
        let refused = fairness.admit(&a1, now, false).expect_err("over the key's share");
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::ResourceExhausted, "KEY_OVERLOADED"));
        let third = fairness.admit(&a2, now, false).expect("the tenant has one more");
        let refused = fairness.admit(&a2, now, false).expect_err("over the tenant's share");
        assert_eq!(reason(&refused), "TENANT_OVERLOADED");
        fairness.admit(&g, now, false).expect("another tenant is untouched");
        drop((held, third));
        fairness.admit(&a1, now, false).expect("released");
    }

    #[test]
    fn a_reload_keeps_the_counters_of_the_keys_and_tenants_it_keeps() {
        let keys = keys();
        let fairness = Fairness::new(Some(&keys), LIMITS);
        let now = Instant::now();
        let a1 = keys.authenticate("k1").unwrap();
        let held: Vec<_> = (0..2).map(|_| fairness.admit(&a1, now, false).expect("within the key's share")).collect();
        // The same file with one more key: a1 still has two calls running.
        let hash = crate::auth::hash_key("k4");
        let reloaded = ApiKeys::parse(&format!(
            "keys:\n  - {{name: new, tenant: acme, role: service, hash: '{hash}'}}\n  - {{name: a1, tenant: acme, role: service, hash: '{}'}}",
            crate::auth::hash_key("k1"),
        ))
        .expect("a valid keys file");
        let renewed = fairness.renewed(Some(&reloaded));
        let a1 = reloaded.authenticate("k1").unwrap();
        assert_eq!(reason(&renewed.admit(&a1, now, false).expect_err("still two in progress")), "KEY_OVERLOADED");
        let new = reloaded.authenticate("k4").unwrap();
        let third = renewed.admit(&new, now, false).expect("the tenant's third");
        assert_eq!(
            reason(&renewed.admit(&new, now, false).expect_err("the tenant kept its count")),
            "TENANT_OVERLOADED"
        );
        drop((held, third));
        renewed.admit(&a1, now, false).expect("released through the kept counters");
    }

    #[test]
    fn a_key_entry_overrides_the_per_key_limit() {
        let keys = keys();
        let limits = FairnessLimits { max_concurrent_calls_per_tenant: 10, ..LIMITS };
        let fairness = Fairness::new(Some(&keys), limits);
        let a2 = keys.authenticate("k2").unwrap();
        let now = Instant::now();
        let held: Vec<_> = (0..5).map(|_| fairness.admit(&a2, now, false).expect("its own limit is 5")).collect();
        assert_eq!(reason(&fairness.admit(&a2, now, false).expect_err("the sixth")), "KEY_OVERLOADED");
        drop(held);
    }

    #[test]
    fn the_open_caller_counts_under_the_default_tenant() {
        let limits = FairnessLimits { max_concurrent_calls_per_key: 10, ..LIMITS };
        let fairness = Fairness::new(None, limits);
        let now = Instant::now();
        let held: Vec<_> = (0..3).map(|_| fairness.admit(&Caller::open(), now, false).expect("within")).collect();
        let refused = fairness.admit(&Caller::open(), now, false).expect_err("over the default tenant's share");
        assert_eq!(reason(&refused), "TENANT_OVERLOADED");
        drop(held);
    }

    /// What admitting a call costs, with and without rate limits: run with
    /// `cargo test --release --lib admission_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn admission_cost() {
        let keys = keys();
        let caller = keys.authenticate("k1").unwrap();
        for (what, limits) in [
            ("concurrency only", LIMITS),
            (
                "with rate limits",
                FairnessLimits { rate_limit_per_key: u32::MAX, rate_limit_per_tenant: u32::MAX, ..LIMITS },
            ),
        ] {
            let fairness = Fairness::new(Some(&keys), limits);
            const CALLS: u32 = 1_000_000;
            let started = std::time::Instant::now();
            for _ in 0..CALLS {
                drop(std::hint::black_box(fairness.admit(&caller, Instant::now(), false).expect("admitted")));
            }
            println!("{what}: {:?} per admitted call", started.elapsed() / CALLS);
        }
    }

    #[test]
    fn a_key_holds_only_its_streams_and_a_stream_that_ends_frees_its_slot() {
        let keys = keys();
        let limits = FairnessLimits { max_concurrent_calls_per_key: 10, max_concurrent_calls_per_tenant: 10, ..LIMITS };
        let fairness = Fairness::new(Some(&keys), limits);
        let (a1, a2) = (keys.authenticate("k1").unwrap(), keys.authenticate("k2").unwrap());
        let now = Instant::now();
        let mut streams: Vec<_> = (0..2).map(|_| fairness.admit(&a1, now, true).expect("within")).collect();
        let refused = fairness.admit(&a1, now, true).expect_err("its third stream");
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::ResourceExhausted, "KEY_STREAM_QUOTA"));
        let unary = fairness.admit(&a1, now, false).expect("unary calls are not streams");
        fairness.admit(&a2, now, true).expect("another key has its own streams");
        streams.pop();
        streams.push(fairness.admit(&a1, now, true).expect("an ended stream freed its slot"));
        drop((streams, unary));
    }

    #[test]
    fn a_bucket_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(4, start);
        for _ in 0..4 {
            bucket.take(start).expect("the burst");
        }
        let retry = bucket.take(start).expect_err("empty");
        assert_eq!(retry, Duration::from_millis(250));
        bucket.take(start + Duration::from_millis(250)).expect("one token later");
        assert!(bucket.take(start + Duration::from_millis(300)).is_err());
        for _ in 0..4 {
            bucket.take(start + Duration::from_secs(60)).expect("refilled, but only to the burst");
        }
        assert!(bucket.take(start + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn a_rate_limited_call_says_when_to_retry() {
        use tonic_types::StatusExt as _;
        let keys = keys();
        let fairness = Fairness::new(Some(&keys), FairnessLimits { rate_limit_per_key: 2, ..LIMITS });
        let a1 = keys.authenticate("k1").unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            drop(fairness.admit(&a1, now, false).expect("the burst"));
        }
        let refused = fairness.admit(&a1, now, false).expect_err("over the rate");
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::ResourceExhausted, "RATE_LIMITED"));
        let retry = refused.get_error_details().retry_info().and_then(|info| info.retry_delay).expect("a delay");
        assert_eq!(retry, Duration::from_millis(500));
        fairness.admit(&keys.authenticate("k2").unwrap(), now, false).expect("another key has its own bucket");
    }
}
