//! The `sessiond` binary: settings, telemetry, then the application.

use clap::Parser as _;
use sessiond::settings::Settings;
use sessiond::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    sessiond::telemetry::init(settings.log_format, &settings.log_filter)?;
    let app = Application::build(settings).await.inspect_err(|err| tracing::error!(error = format!("{err:#}"), "start-up failed"))?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
