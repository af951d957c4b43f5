//! Log scenarios, on a pool of sessions: `log-batched` (Log, 100 entries
//! per call) and `log-streaming` (StreamLog, 50 messages of 100 entries
//! per stream), on the embedded store and, as `log-batched-postgres` and
//! `log-streaming-postgres`, on the run's Postgres. All are durable:
//! sessiond answers once every entry is committed. All report entries per
//! second, and count a call that stores fewer entries than it sent as an
//! error.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use sessiond_api::v1::log_service_client::LogServiceClient;
use sessiond_api::v1::{LogEntry, LogLevel, LogRequest, StreamLogRequest};
use tonic::Status;
use tonic::transport::Channel;

use super::sessions::{by_token, create_all, postgres_flags, web_user};
use super::{Context, Scenario};
use crate::load::{Caller, Outcome};
use crate::report::LoadReport;

const ENTRIES_PER_MESSAGE: usize = 100;
const MESSAGES_PER_STREAM: usize = 50;

/// A batch of INFO entries (all kept by the default policy) with a short
/// message, as a request handler would write them.
fn batch() -> Arc<[LogEntry]> {
    (0..ENTRIES_PER_MESSAGE)
        .map(|i| LogEntry {
            level: LogLevel::Info as i32,
            message: format!("GET /api/orders/{i} answered 200 in 12 ms"),
            ..LogEntry::default()
        })
        .collect()
}

/// Answers `outcome` when all `sent` entries were stored.
fn all_accepted(accepted: u32, sent: usize) -> Result<Outcome, Status> {
    if accepted as usize != sent {
        return Err(Status::internal(format!("{accepted} of {sent} entries accepted")));
    }
    Ok(Outcome { units: sent as u64, retries: 0 })
}

/// What a log caller writes with: its client, the session pool and the
/// batch it sends.
struct Writer {
    client: LogServiceClient<Channel>,
    tokens: Arc<[String]>,
    entries: Arc<[LogEntry]>,
    rng: SmallRng,
}

impl Writer {
    fn pick_token(&mut self) -> String {
        self.tokens[self.rng.random_range(0..self.tokens.len())].clone()
    }
}

/// Log: one call of 100 entries.
struct BatchCaller(Writer);

impl Caller for BatchCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let w = &mut self.0;
        let request =
            LogRequest { session: by_token(&w.pick_token()), entries: w.entries.to_vec(), request_id: String::new() };
        all_accepted(w.client.log(request).await?.into_inner().accepted, w.entries.len())
    }
}

/// StreamLog: one stream of 50 messages of 100 entries.
struct StreamCaller(Writer);

impl Caller for StreamCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let w = &mut self.0;
        let token = w.pick_token();
        let entries = w.entries.clone();
        // The first message names the session; the others leave it unset.
        let messages = (0..MESSAGES_PER_STREAM).map(move |m| StreamLogRequest {
            session: if m == 0 { by_token(&token) } else { None },
            entries: entries.to_vec(),
            request_id: String::new(),
        });
        let answer = w.client.stream_log(tokio_stream::iter(messages)).await?;
        all_accepted(answer.into_inner().accepted, MESSAGES_PER_STREAM * ENTRIES_PER_MESSAGE)
    }
}

/// Starts sessiond with `flags` and a session pool, and measures the
/// callers `make` builds.
async fn measure<C: Caller>(
    ctx: &Context,
    scenario: Scenario,
    flags: &[&str],
    make: fn(Writer) -> C,
) -> anyhow::Result<LoadReport> {
    // A long run logs more to each session of a small pool than the
    // per-session quota allows; ingestion is measured without it.
    let flags: Vec<&str> = flags.iter().copied().chain(["--session-log-max-entries-per-session", "0"]).collect();
    let mut server = ctx.launcher.sessiond(&flags).await?;
    let channels = server.channels(ctx.plan.connections).await?;
    let tokens: Arc<[String]> = create_all(ctx, &channels, ctx.plan.pool_sessions, web_user).await?.into();
    let entries = batch();
    let mut report = ctx
        .measure_load(scenario, &mut server, &channels, |i, channel| {
            make(Writer {
                client: LogServiceClient::new(channel),
                tokens: tokens.clone(),
                entries: entries.clone(),
                rng: SmallRng::seed_from_u64(i as u64),
            })
        })
        .await?;
    report.unit = Some("entries");
    Ok(report)
}

/// `log-batched`: Log with 100 entries, to a random session.
pub async fn batched(ctx: &Context) -> anyhow::Result<LoadReport> {
    measure(ctx, Scenario::LogBatched, &[], BatchCaller).await
}

/// `log-streaming`: one StreamLog of 50 × 100 entries, to a random session.
pub async fn streaming(ctx: &Context) -> anyhow::Result<LoadReport> {
    measure(ctx, Scenario::LogStreaming, &[], StreamCaller).await
}

/// `log-batched-postgres`: `log-batched` storing in the run's Postgres.
pub async fn batched_postgres(ctx: &Context) -> anyhow::Result<LoadReport> {
    measure(ctx, Scenario::LogBatchedPostgres, &postgres_flags(ctx)?, BatchCaller).await
}

/// `log-streaming-postgres`: `log-streaming` storing in the run's Postgres.
pub async fn streaming_postgres(ctx: &Context) -> anyhow::Result<LoadReport> {
    measure(ctx, Scenario::LogStreamingPostgres, &postgres_flags(ctx)?, StreamCaller).await
}
