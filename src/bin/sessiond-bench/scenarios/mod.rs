//! The scenarios: what `--scenarios` names, what each is compared with, and
//! the run that measures the chosen ones (baselines first) and reports.
//!
//! Every load scenario starts its own server with an empty store, creates
//! what it needs, then runs the load: one scenario never sees another's data.

pub mod cold_start;
pub mod echo;
pub mod logs;
pub mod memory;
pub mod postgres_insert;
pub mod revocation;
pub mod sessions;
pub mod storage_cas;

use std::time::{Duration, Instant};

use clap::ValueEnum;
use tonic::transport::Channel;

use crate::baseline::{Baseline, Ratio};
use crate::cli::{Plan, RunArgs};
use crate::load::{self, Caller, Window};
use crate::procfs::Process;
use crate::report::{self, LoadReport, Measurement};
use crate::server::{Launcher, ServerProcess};
use crate::stats::Summary;

/// A measurement `sessiond-bench` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The echo baseline itself.
    Echo,
    /// HasPrivilege by token on cached WEB_USER sessions with role Manager.
    HasPrivilege,
    /// GetSession by token on cached sessions.
    GetSession,
    /// CreateSession, answered after the store commits it.
    CreateSession,
    /// CreateSession on Postgres (needs --database-url), compared with
    /// direct single-row INSERTs.
    CreateSessionPostgres,
    /// Log with 100 entries per call.
    LogBatched,
    /// StreamLog: per call, one stream of 50 messages of 100 entries.
    LogStreaming,
    /// `log-batched` on Postgres (needs --database-url).
    LogBatchedPostgres,
    /// `log-streaming` on Postgres (needs --database-url).
    LogStreamingPostgres,
    /// GetStorage + PutStorage(expected_version) on 8 shared sessions,
    /// retrying on ABORTED; the counters are checked at the end.
    StorageCas,
    /// Server RSS per cached session.
    Memory,
    /// Time from spawning sessiond to health SERVING.
    ColdStart,
    /// Time from a revoke on one replica to another refusing the session
    /// (needs --database-url).
    Revocation,
}

impl Scenario {
    pub const ALL: [Scenario; 13] = [
        Scenario::Echo,
        Scenario::HasPrivilege,
        Scenario::GetSession,
        Scenario::CreateSession,
        Scenario::CreateSessionPostgres,
        Scenario::LogBatched,
        Scenario::LogStreaming,
        Scenario::LogBatchedPostgres,
        Scenario::LogStreamingPostgres,
        Scenario::StorageCas,
        Scenario::Memory,
        Scenario::ColdStart,
        Scenario::Revocation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::HasPrivilege => "has-privilege",
            Scenario::GetSession => "get-session",
            Scenario::CreateSession => "create-session",
            Scenario::CreateSessionPostgres => "create-session-postgres",
            Scenario::LogBatched => "log-batched",
            Scenario::LogStreaming => "log-streaming",
            Scenario::LogBatchedPostgres => "log-batched-postgres",
            Scenario::LogStreamingPostgres => "log-streaming-postgres",
            Scenario::StorageCas => "storage-cas",
            Scenario::Memory => "memory",
            Scenario::ColdStart => "cold-start",
            Scenario::Revocation => "revocation",
        }
    }

    /// The baselines this scenario's figures are divided by. Unary calls
    /// are compared with the echo; a stream of 50 messages is not one call.
    pub fn baselines(self) -> &'static [Baseline] {
        match self {
            Scenario::HasPrivilege
            | Scenario::GetSession
            | Scenario::CreateSession
            | Scenario::LogBatched
            | Scenario::LogBatchedPostgres
            | Scenario::StorageCas => &[Baseline::Echo],
            Scenario::CreateSessionPostgres => &[Baseline::PostgresInsert],
            Scenario::Echo
            | Scenario::LogStreaming
            | Scenario::LogStreamingPostgres
            | Scenario::Memory
            | Scenario::ColdStart
            | Scenario::Revocation => &[],
        }
    }

    /// Whether the scenario stores in the run's Postgres.
    fn needs_database(self) -> bool {
        matches!(self, Scenario::CreateSessionPostgres | Scenario::LogBatchedPostgres | Scenario::LogStreamingPostgres)
    }

    /// The baseline this scenario is, if it is one.
    fn as_baseline(self) -> Option<Baseline> {
        match self {
            Scenario::Echo => Some(Baseline::Echo),
            Scenario::CreateSessionPostgres => None,
            _ => None,
        }
    }

    async fn measure(self, ctx: &Context) -> anyhow::Result<Measurement> {
        Ok(match self {
            Scenario::Echo => Measurement::Load(echo::run(ctx).await?),
            Scenario::HasPrivilege => Measurement::Load(sessions::has_privilege(ctx).await?),
            Scenario::GetSession => Measurement::Load(sessions::get_session(ctx).await?),
            Scenario::CreateSession => Measurement::Load(sessions::create_session(ctx).await?),
            Scenario::CreateSessionPostgres => Measurement::Load(sessions::create_session_postgres(ctx).await?),
            Scenario::LogBatched => Measurement::Load(logs::batched(ctx).await?),
            Scenario::LogStreaming => Measurement::Load(logs::streaming(ctx).await?),
            Scenario::LogBatchedPostgres => Measurement::Load(logs::batched_postgres(ctx).await?),
            Scenario::LogStreamingPostgres => Measurement::Load(logs::streaming_postgres(ctx).await?),
            Scenario::StorageCas => Measurement::Load(storage_cas::run(ctx).await?),
            Scenario::Memory => Measurement::Memory(memory::run(ctx).await?),
            Scenario::ColdStart => Measurement::ColdStart(cold_start::run(ctx).await?),
            Scenario::Revocation => Measurement::Revocation(revocation::run(ctx).await?),
        })
    }
}

/// What every scenario runs with.
#[derive(Debug)]
pub struct Context {
    pub plan: Plan,
    pub launcher: Launcher,
}

impl Context {
    fn window(&self) -> Window {
        Window { warmup: self.plan.warmup, measure: self.plan.measure }
    }

    /// Drives the run's load with callers from `make`, then reads the
    /// server's RSS, and the CPU that the server and this loader used in
    /// the measured window. Fails when the server died meanwhile.
    async fn measure_load<C: Caller>(
        &self,
        scenario: Scenario,
        server: &mut ServerProcess,
        channels: &[Channel],
        make: impl FnMut(usize, Channel) -> C,
    ) -> anyhow::Result<LoadReport> {
        let window = self.window();
        let process = server.process();
        // The CPU meter starts when the warm-up ends, as the window does.
        let (recorded, cpu) = tokio::join!(load::drive(window, self.plan.concurrency, channels, make), async {
            tokio::time::sleep(window.warmup).await;
            CpuMeter::start(process)
        });
        let recorded = recorded?;
        server.check_alive()?;
        let (server_cpu, loader_cpu) = cpu?.stop()?;
        let mut report = LoadReport::new(scenario.name(), Summary::of(&recorded), server.rss_bytes()?);
        report.server_cpu = server_cpu;
        report.loader_cpu = loader_cpu;
        Ok(report)
    }
}

/// CPU used by a server and by this loader over some wall time.
struct CpuMeter {
    server: Process,
    started: Instant,
    server_cpu: Duration,
    loader_cpu: Duration,
}

impl CpuMeter {
    fn start(server: Process) -> anyhow::Result<Self> {
        Ok(Self {
            server,
            started: Instant::now(),
            server_cpu: server.cpu_time()?,
            loader_cpu: Process::This.cpu_time()?,
        })
    }

    /// Cores busy on average since `start`: the server's and the loader's.
    fn stop(self) -> anyhow::Result<(f64, f64)> {
        let wall = self.started.elapsed().as_secs_f64();
        let server = (self.server.cpu_time()? - self.server_cpu).as_secs_f64() / wall;
        let loader = (Process::This.cpu_time()? - self.loader_cpu).as_secs_f64() / wall;
        Ok((server, loader))
    }
}

/// Measures the chosen scenarios and their baselines, prints the report,
/// and fails only on a harness failure or a correctness MISMATCH.
pub async fn run_all(args: RunArgs) -> anyhow::Result<()> {
    let ctx =
        Context { plan: args.plan(), launcher: Launcher::new(args.sessiond_bin.clone(), args.sessiond_args.clone())? };
    let mut chosen: Vec<Scenario> = Vec::new();
    for scenario in if args.scenarios.is_empty() { &Scenario::ALL[..] } else { &args.scenarios[..] } {
        if scenario.needs_database() && ctx.plan.database_url.is_none() {
            eprintln!("sessiond-bench: skipping {}: no --database-url", scenario.name());
            continue;
        }
        if !chosen.contains(scenario) {
            chosen.push(*scenario);
        }
    }
    eprintln!("sessiond-bench: sessiond is {}", ctx.launcher.sessiond_path().display());

    // Baselines first, so that a scenario's ratios never wait on them; a
    // baseline that is also a chosen scenario is measured once.
    let mut baselines: Vec<(Baseline, LoadReport)> = Vec::new();
    for baseline in Baseline::ALL {
        if chosen.iter().any(|s| s.baselines().contains(&baseline) || s.as_baseline() == Some(baseline)) {
            eprintln!("sessiond-bench: measuring baseline {}", baseline.name());
            baselines.push((baseline, baseline.measure(&ctx).await?));
        }
    }

    let mut measurements = Vec::new();
    for (baseline, report) in &baselines {
        if !chosen.iter().any(|s| s.as_baseline() == Some(*baseline)) {
            // Shown anyway: the ratios are meaningless without it.
            measurements.push(Measurement::Load(report.clone()));
        }
    }
    for scenario in chosen {
        let measurement = match scenario.as_baseline().and_then(|b| baselines.iter().find(|(m, _)| *m == b)) {
            Some((_, report)) => Measurement::Load(report.clone()),
            None => {
                eprintln!("sessiond-bench: measuring {}", scenario.name());
                let mut measurement = scenario.measure(&ctx).await?;
                if let Measurement::Load(report) = &mut measurement {
                    for (baseline, reference) in baselines.iter().filter(|(b, _)| scenario.baselines().contains(b)) {
                        report.ratios.push(Ratio::between(*baseline, &report.summary, &reference.summary));
                    }
                }
                measurement
            }
        };
        measurements.push(measurement);
    }

    let text = if args.markdown {
        report::markdown(&ctx.plan, &measurements)
    } else {
        report::plain(&ctx.plan, &measurements)
    };
    print!("{text}");

    let mismatches: Vec<String> = measurements
        .iter()
        .filter_map(|m| match m {
            Measurement::Load(report) => report.mismatch.as_ref().map(|why| format!("{}: {why}", report.scenario)),
            _ => None,
        })
        .collect();
    if !mismatches.is_empty() {
        anyhow::bail!("correctness MISMATCH: {}", mismatches.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_named_as_scenarios_spells_it() {
        for scenario in Scenario::ALL {
            let flag = scenario.to_possible_value().expect("no scenario is skipped");
            assert_eq!(flag.get_name(), scenario.name());
        }
        assert_eq!(Scenario::value_variants(), Scenario::ALL);
    }
}
