//! The scenarios: what `--scenarios` names, what each is compared with, and
//! the run that measures the chosen ones (baselines first) and reports.
//!
//! Every load scenario starts its own server with an empty store, creates
//! what it needs, then runs the load: one scenario never sees another's data.

pub mod cold_start;
pub mod echo;
pub mod fan_out;
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
use crate::procfs::{Postmaster, Process};
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
    /// One publisher, 100 subscribers: channel messages across two
    /// replicas and on one, next to Redis PUBLISH/SUBSCRIBE, and a resume
    /// after a replica restart (needs --database-url).
    FanOut,
}

impl Scenario {
    pub const ALL: [Scenario; 14] = [
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
        Scenario::FanOut,
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
            Scenario::FanOut => "fan-out",
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
            | Scenario::Revocation
            | Scenario::FanOut => &[],
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
            Scenario::Echo => echo::run(ctx).await?.into(),
            Scenario::HasPrivilege => sessions::has_privilege(ctx).await?.into(),
            Scenario::GetSession => sessions::get_session(ctx).await?.into(),
            Scenario::CreateSession => sessions::create_session(ctx).await?.into(),
            Scenario::CreateSessionPostgres => sessions::create_session_postgres(ctx).await?.into(),
            Scenario::LogBatched => logs::batched(ctx).await?.into(),
            Scenario::LogStreaming => logs::streaming(ctx).await?.into(),
            Scenario::LogBatchedPostgres => logs::batched_postgres(ctx).await?.into(),
            Scenario::LogStreamingPostgres => logs::streaming_postgres(ctx).await?.into(),
            Scenario::StorageCas => storage_cas::run(ctx).await?.into(),
            Scenario::Memory => Measurement::Memory(memory::run(ctx).await?),
            Scenario::ColdStart => Measurement::ColdStart(cold_start::run(ctx).await?),
            Scenario::Revocation => Measurement::Revocation(revocation::run(ctx).await?),
            Scenario::FanOut => Measurement::FanOut(fan_out::run(ctx).await?),
        })
    }
}

/// What every scenario runs with.
#[derive(Debug)]
pub struct Context {
    pub plan: Plan,
    pub launcher: Launcher,
    /// The run's Postgres, when it runs on this machine: its CPU is
    /// measured with the server's and the loader's.
    pub database: Option<Postmaster>,
}

impl Context {
    fn window(&self) -> Window {
        Window { warmup: self.plan.warmup, measure: self.plan.measure }
    }

    /// Drives the run's load with callers from `make`, then reads the
    /// server's RSS, and the CPU that the server, this loader and the run's
    /// Postgres used in the measured window. Fails when the server died
    /// meanwhile.
    async fn measure_load<C: Caller>(
        &self,
        scenario: Scenario,
        server: &mut ServerProcess,
        channels: &[Channel],
        make: impl FnMut(usize, Channel) -> C,
    ) -> anyhow::Result<LoadReport> {
        let (recorded, cpu) = self.drive(Some(server.process()), channels, make).await?;
        server.check_alive()?;
        let mut report = LoadReport::new(scenario.name(), Summary::of(&recorded), server.rss_bytes()?);
        cpu.fill(&mut report);
        Ok(report)
    }

    /// Drives the run's load with callers from `make` and meters the CPU of
    /// `server`, this loader and the run's Postgres in the measured window.
    async fn drive<C: Caller>(
        &self,
        server: Option<Process>,
        channels: &[Channel],
        make: impl FnMut(usize, Channel) -> C,
    ) -> anyhow::Result<(load::Recorded, Cpu)> {
        let window = self.window();
        // The CPU meter runs over the measured window. The callers' Postgres
        // connections close only after it stopped: a backend that exits
        // while the meter reads could be missed.
        let (driven, cpu) = tokio::join!(load::drive(window, self.plan.concurrency, channels, make), async {
            tokio::time::sleep(window.warmup).await;
            let meter = CpuMeter::start(server, self.database)?;
            tokio::time::sleep(window.measure).await;
            meter.stop()
        });
        let (recorded, callers) = driven?;
        let cpu = cpu?;
        drop(callers);
        Ok((recorded, cpu))
    }
}

/// Cores kept busy on average over a measured window.
struct Cpu {
    server: f64,
    loader: f64,
    database: Option<f64>,
}

impl Cpu {
    fn fill(&self, report: &mut LoadReport) {
        report.server_cpu = self.server;
        report.loader_cpu = self.loader;
        report.database_cpu = self.database;
    }
}

/// CPU used by a server, by this loader and by a Postgres over some wall
/// time.
struct CpuMeter {
    server: Option<Process>,
    database: Option<Postmaster>,
    started: Instant,
    server_cpu: Duration,
    loader_cpu: Duration,
    database_cpu: Duration,
}

impl CpuMeter {
    fn start(server: Option<Process>, database: Option<Postmaster>) -> anyhow::Result<Self> {
        Ok(Self {
            server,
            database,
            started: Instant::now(),
            server_cpu: server.map(Process::cpu_time).transpose()?.unwrap_or_default(),
            loader_cpu: Process::This.cpu_time()?,
            database_cpu: database.map(Postmaster::cpu_time).transpose()?.unwrap_or_default(),
        })
    }

    fn stop(self) -> anyhow::Result<Cpu> {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / wall;
        Ok(Cpu {
            server: match self.server {
                Some(server) => cores(server.cpu_time()?, self.server_cpu),
                None => 0.0,
            },
            loader: cores(Process::This.cpu_time()?, self.loader_cpu),
            database: match self.database {
                Some(database) => Some(cores(database.cpu_time()?, self.database_cpu)),
                None => None,
            },
        })
    }
}

/// The postmaster of the Postgres at `url`, when it runs on this machine.
async fn local_postmaster(url: &str) -> anyhow::Result<Option<Postmaster>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    // Looked up while the backend is still there: it exits with the
    // connection.
    let postmaster = u32::try_from(backend).ok().and_then(Postmaster::of_backend);
    drop(client);
    let _ = connection.await;
    Ok(postmaster)
}

/// Measures the chosen scenarios and their baselines, prints the report,
/// and fails only on a harness failure or a correctness MISMATCH.
pub async fn run_all(args: RunArgs) -> anyhow::Result<()> {
    let plan = args.plan();
    let database = match &plan.database_url {
        Some(url) => {
            let found = local_postmaster(url).await?;
            if found.is_none() {
                eprintln!("sessiond-bench: Postgres does not run on this machine: its CPU is not measured");
            }
            found
        }
        None => None,
    };
    let ctx =
        Context { plan, launcher: Launcher::new(args.sessiond_bin.clone(), args.sessiond_args.clone())?, database };
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
            measurements.push(report.clone().into());
        }
    }
    for scenario in chosen {
        let measurement = match scenario.as_baseline().and_then(|b| baselines.iter().find(|(m, _)| *m == b)) {
            Some((_, report)) => report.clone().into(),
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
