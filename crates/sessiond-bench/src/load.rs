//! The load driver: N callers (tokio tasks) share M HTTP/2 connections
//! round-robin (caller `i` uses connection `i % M`), call as fast as their
//! answers come back for a warm-up and then a measured window, and record
//! the latency of every call started in the window. Also [`prepare`], which
//! does a fixed number of calls (creating sessions, say) the same way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;
use tonic::Status;
use tonic::transport::Channel;

/// What one successful call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Units of work done: log entries stored, increments applied; 1 for a
    /// plain call.
    pub units: u64,
    /// Attempts that lost a compare-and-set before this one succeeded.
    pub retries: u64,
}

impl Outcome {
    pub const ONE: Self = Self { units: 1, retries: 0 };
}

/// One caller's connection to the server and whatever state its calls need.
pub trait Caller: Send + 'static {
    /// One call, or one unit of the scenario's work (a stream, a
    /// read-modify-write loop), from start to answer.
    fn call(&mut self) -> impl Future<Output = Result<Outcome, Status>> + Send;
}

/// How long to warm up and to measure.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Everything recorded during the measured window.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Latency of every successful call, in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
    pub units: u64,
    pub retries: u64,
    pub errors: u64,
    /// The first error's text, to tell what went wrong.
    pub first_error: Option<String>,
    pub window: Duration,
}

/// Runs one caller per channel slot (`make(i, channel)` builds caller `i`)
/// through the warm-up and the measured window. Answers the callers too:
/// what they hold (connections) lives until the one who drove them drops
/// them.
pub async fn drive<C: Caller>(
    window: Window,
    concurrency: usize,
    channels: &[Channel],
    mut make: impl FnMut(usize, Channel) -> C,
) -> anyhow::Result<(Recorded, Vec<C>)> {
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let end = measure_from + window.measure;
    let mut callers = JoinSet::new();
    for i in 0..concurrency {
        let mut caller = make(i, channels[i % channels.len()].clone());
        callers.spawn(async move {
            let mut tally = Recorded::default();
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let result = caller.call().await;
                if started < measure_from {
                    continue;
                }
                match result {
                    Ok(outcome) => {
                        tally.latencies_ns.push(started.elapsed().as_nanos() as u64);
                        tally.units += outcome.units;
                        tally.retries += outcome.retries;
                    }
                    Err(status) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| describe(&status));
                    }
                }
            }
            (tally, caller)
        });
    }
    let mut all = Recorded { window: window.measure, ..Recorded::default() };
    let mut done = Vec::with_capacity(concurrency);
    while let Some(joined) = callers.join_next().await {
        let (tally, caller) = joined.context("a caller task failed")?;
        done.push(caller);
        all.latencies_ns.extend(tally.latencies_ns);
        all.units += tally.units;
        all.retries += tally.retries;
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    all.latencies_ns.sort_unstable();
    Ok((all, done))
}

/// Calls `call(i, channel)` for every `i` in `0..count`, `concurrency` at a
/// time over the channels, and answers the results in index order. The
/// first error fails the whole: preparation must succeed.
pub async fn prepare<T, F, Fut>(
    count: usize,
    concurrency: usize,
    channels: &[Channel],
    call: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, Channel) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, Status>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for w in 0..concurrency.min(count) {
        let (next, call, channel) = (next.clone(), call.clone(), channels[w % channels.len()].clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(done);
                }
                done.push((i, call(i, channel.clone()).await?));
            }
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        let done: Result<Vec<(usize, T)>, Status> = done.context("a preparing task failed")?;
        results.extend(done.map_err(|status| anyhow::anyhow!("preparing failed: {}", describe(&status)))?);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, t)| t).collect())
}

/// A status as one line: code and message.
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
