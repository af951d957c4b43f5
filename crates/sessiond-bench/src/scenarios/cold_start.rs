//! `cold-start`: time from spawning sessiond, on an empty data directory, to
//! its health service answering SERVING — process start, store creation
//! and migration, roles file, listener. The median of several starts.

use super::Context;
use crate::report::ColdStartReport;
use crate::stats::median;

pub async fn run(ctx: &Context) -> anyhow::Result<ColdStartReport> {
    let mut runs = Vec::with_capacity(ctx.plan.cold_starts);
    let mut rss_serving = 0;
    for _ in 0..ctx.plan.cold_starts {
        let server = ctx.launcher.sessiond(&[]).await?;
        runs.push(server.ready_after());
        rss_serving = server.rss_bytes()?;
    }
    Ok(ColdStartReport { median: median(runs.clone()), runs, rss_serving })
}
