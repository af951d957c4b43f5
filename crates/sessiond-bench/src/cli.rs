//! Flags, and the run plan they imply.
//!
//! A full run warms up 3 s and measures 15 s per scenario; `--quick` warms
//! up 0.5 s and measures 2 s, and holds fewer sessions in the memory
//! scenario. `--warmup` and `--duration` override either.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::scenarios::Scenario;

/// Benchmarks sessiond against a bare tonic echo baseline.
///
/// Starts each server it measures as a child process on a free loopback
/// port, drives it from concurrent callers over several HTTP/2 connections,
/// and prints calls/s, latency percentiles, errors, server RSS and the ratio
/// to the baseline. Exits non-zero only when the harness fails (a server
/// does not start, or a correctness check finds a MISMATCH), never because
/// something is slow.
#[derive(Debug, Parser)]
#[command(name = "sessiond-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the echo baseline (what the benchmark starts as a child).
    EchoServer {
        /// Address to serve on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Measure cached HasPrivilege, GetSession and Authenticate next to
    /// the echo baseline with h2load, a C loader (see `h2load`).
    H2load(crate::h2load::H2loadArgs),
    /// Measure expiry, activity flush, admin listing and start-up on stores
    /// of growing size, built directly through the store (see `scale`).
    Scale {
        /// Store sizes, in sessions.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
        sessions: Vec<usize>,
        /// Postgres to measure too (emptied for each size).
        #[arg(long, env = "SESSIOND_BENCH_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Log entries stored per session (continuously logged, readable),
        /// for the log-append and QueryLogs figures; 0 skips them.
        #[arg(long, default_value_t = 1.0)]
        entries_per_session: f64,
    },
}

/// How a benchmark run is made.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Smoke-test lengths: 0.5 s warm-up, 2 s per scenario, 10k sessions
    /// in the memory scenario, 3 cold starts.
    #[arg(long)]
    pub quick: bool,

    /// Scenarios to run, comma-separated. Default: all. Baselines that a
    /// chosen scenario is compared with run too.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,

    /// Concurrent callers (tokio tasks).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// HTTP/2 connections the callers share, round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Warm-up before measuring each scenario (default 3s, quick 500ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,

    /// Measured time per scenario (default 15s, quick 2s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Sessions created up front for the scenarios that call existing ones.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(8..))]
    pub pool_sessions: u32,

    /// Sessions the memory scenario caches (default 100000, quick 10000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub memory_sessions: Option<u32>,

    /// Cold starts timed; the median is reported (default 5, quick 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub cold_starts: Option<u32>,

    /// The sessiond binary. Default: `sessiond` next to this executable.
    #[arg(long)]
    pub sessiond_bin: Option<PathBuf>,

    /// A flag for every sessiond started (repeat for more), e.g.
    /// `--sessiond-arg=--activity-flush=5s`.
    #[arg(long = "sessiond-arg", allow_hyphen_values = true)]
    pub sessiond_args: Vec<String>,

    /// Postgres database for the scenarios that need one (revocation): two
    /// sessiond replicas share it. scripts/bench starts a throwaway one.
    #[arg(long, env = "SESSIOND_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Sessions revoked in the revocation scenario (default 500, quick 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub revocations: Option<u32>,

    /// Print the results as Markdown tables, for BENCHMARKS.md.
    #[arg(long)]
    pub markdown: bool,
}

/// The lengths and sizes of a run, with the defaults filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub warmup: Duration,
    pub measure: Duration,
    pub concurrency: usize,
    pub connections: usize,
    pub pool_sessions: usize,
    pub memory_sessions: usize,
    pub cold_starts: usize,
    pub database_url: Option<String>,
    pub revocations: usize,
}

impl RunArgs {
    pub fn plan(&self) -> Plan {
        let pick = |given: Option<Duration>, full: u64, quick: u64| {
            given.unwrap_or(Duration::from_millis(if self.quick { quick } else { full }))
        };
        let count =
            |given: Option<u32>, full: u32, quick: u32| given.unwrap_or(if self.quick { quick } else { full }) as usize;
        Plan {
            quick: self.quick,
            warmup: pick(self.warmup, 3_000, 500),
            measure: pick(self.duration, 15_000, 2_000),
            concurrency: self.concurrency as usize,
            connections: self.connections as usize,
            pool_sessions: self.pool_sessions as usize,
            memory_sessions: count(self.memory_sessions, 100_000, 10_000),
            cold_starts: count(self.cold_starts, 5, 3),
            database_url: self.database_url.clone(),
            revocations: count(self.revocations, 500, 50),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_mode_shortens_every_length_and_flags_still_win() {
        let quick = Cli::parse_from(["sessiond-bench", "--quick", "--duration", "1s"]).run.plan();
        assert_eq!(quick.warmup, Duration::from_millis(500));
        assert_eq!(quick.measure, Duration::from_secs(1));
        assert_eq!(quick.memory_sessions, 10_000);
        let full = Cli::parse_from(["sessiond-bench", "--scenarios", "echo,get-session"]).run;
        assert_eq!(full.scenarios, [Scenario::Echo, Scenario::GetSession]);
        assert_eq!(full.plan().measure, Duration::from_secs(15));
    }
}
