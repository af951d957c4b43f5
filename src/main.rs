//! The `sessiond` binary: settings, telemetry, then the application.

use std::io::Read as _;

use anyhow::Context as _;
use sessiond::settings::{Command, Settings};
use sessiond::startup::Application;
use sessiond::telemetry::{self, TelemetryConfig};

/// jemalloc: long-lived cache entries between short-lived request buffers
/// fragment glibc's heap (see BENCHMARKS.md, memory per cached session).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    sessiond::startup::runtime().context("starting the async runtime")?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    if let Some(Command::HashKey { generate, argon2, allow_weak }) = settings.command {
        return hash_key(generate, argon2, allow_weak);
    }
    if let Some(Command::Probe(args)) = &settings.command {
        return probe(args, &settings).await;
    }
    if let Some(Command::Admin(command)) = settings.command {
        let code = sessiond::cli::run(command, Settings::cli_api_key()).await;
        std::process::exit(code as i32);
    }
    let telemetry = telemetry::init(&TelemetryConfig::from_settings(&settings))?;
    let served = async {
        if let Some(Command::Migrate) = settings.command {
            return migrate(&settings).await;
        }
        let mut stopped = Box::pin(shutdown_signal());
        let app = tokio::select! {
            app = Application::build(settings) => {
                app.inspect_err(|err| tracing::error!(error = format!("{err:#}"), "start-up failed"))?
            }
            () = &mut stopped => {
                tracing::info!("stopped while starting up");
                return Ok(());
            }
        };
        app.run_until_stopped(stopped).await
    }
    .await;
    // Exports the last spans and metrics, of a failed start-up too.
    telemetry.shutdown().await;
    served
}

/// `sessiond hash-key`: the configured form of a key, never logged. A key
/// read from standard input must be strong enough unless `allow_weak`.
fn hash_key(generate: bool, argon2: bool, allow_weak: bool) -> anyhow::Result<()> {
    let hash =
        |key: &str| if argon2 { sessiond::auth::hash_key_argon2(key) } else { Ok(sessiond::auth::hash_key(key)) };
    if generate {
        let (key, _) = sessiond::auth::generate_key();
        println!("key:  {key}\nhash: {}", hash(&key)?);
        return Ok(());
    }
    let mut key = String::new();
    std::io::stdin().read_to_string(&mut key).context("reading the key from standard input")?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on standard input");
    if let Err(weak) = sessiond::auth::check_key_strength(key) {
        anyhow::ensure!(allow_weak, "refusing to hash a weak key: {weak}");
        eprintln!("warning: hashing a weak key because of --allow-weak: {weak}");
    }
    println!("{}", hash(key)?);
    Ok(())
}

/// `sessiond probe`: one line, on stdout and exit 0 when SERVING, else on
/// stderr and exit 1 (never 2, which Docker's HEALTHCHECK reserves).
async fn probe(args: &sessiond::probe::ProbeArgs, settings: &Settings) -> anyhow::Result<()> {
    let probe = sessiond::probe::Probe::new(args, settings.server.listen, settings.auth.tls_cert.is_some());
    match probe.check().await {
        Ok(()) => {
            println!("{}: SERVING", probe.address);
            Ok(())
        }
        Err(err) => {
            eprintln!("sessiond probe: {err}");
            std::process::exit(1)
        }
    }
}

/// `sessiond migrate`: brings the Postgres schema up to date.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let postgres = settings.postgres().context("migrate needs --database-url (SESSIOND_DATABASE_URL)")?;
    let applied = sessiond::store::postgres::migrate(&postgres).await.context("migrating Postgres")?;
    tracing::info!(applied, "migrations applied");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C (SIGINT). The handlers are installed
/// when this is called, before sessiond accepts anything: a SIGTERM that
/// arrives while it starts drains it like any other, instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
