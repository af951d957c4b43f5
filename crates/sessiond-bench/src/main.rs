//! `sessiond-bench`: measures sessiond under load, next to a bare tonic echo
//! baseline measured in the same run with the same loader.
//!
//! Every server it measures runs as a child process (its RSS is read from
//! `/proc`, and it shares no runtime with the loader): the real `sessiond`
//! binary, and the echo baseline, which is this same binary started as
//! `sessiond-bench echo-server --listen ADDR`.
//!
//! - [`cli`]: flags, and the run plan they imply (quick or full);
//! - [`echo`]: the echo baseline's generated code and server;
//! - [`server`]: child servers — spawn, wait for health SERVING, RSS, stop;
//! - [`scratch`]: temporary directories removed on drop;
//! - [`procfs`]: RSS and CPU time of a process, from `/proc`;
//! - [`load`]: N callers over M HTTP/2 connections, latency of every call;
//! - [`stats`]: percentiles and rates of a load run;
//! - [`scenarios`]: what is measured, one module per family of calls;
//! - [`baseline`]: what scenarios are compared with, and how it is measured;
//! - [`redis`]: the Redis anchor of the fan-out scenario;
//! - [`report`]: the table on stdout, plain or Markdown;
//! - [`scale`]: `sessiond-bench scale`, costs as the store grows;
//! - [`h2load`]: `sessiond-bench h2load`, cached reads driven by a C loader.

mod baseline;
mod cli;
mod echo;
mod h2load;
mod load;
mod procfs;
mod redis;
mod report;
mod scale;
mod scenarios;
mod scratch;
mod server;
mod stats;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

/// Every command, the echo server's included, runs on sessiond's own
/// runtime (`startup::runtime`): a baseline scheduled otherwise would
/// measure the scheduler, not sessiond.
/// sessiond's allocator (see its `main.rs`), for the echo baseline and
/// the loaders alike: a baseline allocating otherwise would measure the
/// allocator, not sessiond.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match sessiond::startup::runtime() {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("sessiond-bench: starting the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::EchoServer { listen }) => echo::serve(listen).await,
        Some(Command::H2load(args)) => h2load::run(args).await,
        Some(Command::Scale { sessions, database_url, entries_per_session }) => {
            scale::run(sessions, database_url, entries_per_session).await
        }
        None => scenarios::run_all(cli.run).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sessiond-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
