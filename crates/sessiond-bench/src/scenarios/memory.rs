//! `memory`: what a cached session costs sessiond in resident memory.
//!
//! Starts sessiond with a cache large enough for every session, warms it
//! (connections, runtime threads, store connections) with a round of
//! creates and reads, reads its RSS, then creates K sessions and reads each
//! once by token, so that the cache holds the record and the token mapping,
//! and reads its RSS again. The difference over K is the cost per session:
//! the cache entries, the activity tracker, the allocator's overhead and
//! the store's page cache growth, all that a session really costs.
//!
//! sessiond runs with an `--activity-flush` longer than any run: writing a
//! session's activity drops its record from the cache, so with the default
//! (30 s) a long run (a million sessions) would end with most records gone
//! and report less than a cached session costs.

use std::sync::Arc;
use std::time::Instant;

use super::Context;
use super::sessions::{create_all, touch_all, web_user};
use crate::report::MemoryReport;

/// Sessions created and read before the first RSS reading, per caller.
const WARM_UP_PER_CALLER: usize = 4;

/// Longer than any run: no activity is written, so every record read stays
/// cached until RSS is read.
const ACTIVITY_FLUSH: &str = "1day";

pub async fn run(ctx: &Context) -> anyhow::Result<MemoryReport> {
    let sessions = ctx.plan.memory_sessions;
    let warm_up = ctx.plan.concurrency * WARM_UP_PER_CALLER;
    // Room for the warm-up sessions and some: nothing may be evicted.
    let capacity = (sessions + warm_up) * 11 / 10;
    let mut server =
        ctx.launcher.sessiond(&["--cache-capacity", &capacity.to_string(), "--activity-flush", ACTIVITY_FLUSH]).await?;
    let channels = server.channels(ctx.plan.connections).await?;

    let warm: Arc<[String]> = create_all(ctx, &channels, warm_up, web_user).await?.into();
    touch_all(ctx, &channels, &warm).await?;
    let rss_before = server.rss_bytes()?;

    let started = Instant::now();
    let tokens: Arc<[String]> = create_all(ctx, &channels, sessions, web_user).await?.into();
    let created_per_sec = sessions as f64 / started.elapsed().as_secs_f64();
    touch_all(ctx, &channels, &tokens).await?;
    server.check_alive()?;
    let rss_after = server.rss_bytes()?;
    Ok(MemoryReport { sessions, rss_before, rss_after, created_per_sec })
}
