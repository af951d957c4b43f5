//! The admin CLI: `sessiond sessions|logs|events|messages|health|version`, a client
//! of sessiond's public gRPC API and nothing else (the generated tonic
//! clients of [`crate::pb`]), for a local or a remote sessiond.
//!
//! - [`connect`]: the address, TLS options and the API key (from an
//!   environment variable or a file, never a flag);
//! - [`output`]: aligned tables for people, JSON lines for scripts;
//! - [`sessions`], [`logs`], [`events`], [`messages`], [`health`]: one file per command
//!   family, each parsing its flags into one request and printing the
//!   answer;
//! - [`exit`]: the exit codes scripts can trust, one per kind of failure.
//!
//! Input is passed to the server as given: the CLI refuses what the API
//! refuses, with the API's own message and the fields its `BadRequest`
//! names.

pub mod connect;
pub mod events;
pub mod exit;
pub mod health;
pub mod logs;
pub mod messages;
pub mod output;
pub mod sessions;

use clap::Subcommand;

pub use exit::{ExitCode, Failure};

/// The admin commands, flattened into `sessiond`'s own subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Lists, shows and revokes sessions (admin key for other users'
    /// sessions).
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Queries readable session log entries, or follows new ones as they come
    /// (admin key).
    #[command(subcommand)]
    Logs(logs::LogsCommand),
    /// Watches session events as they happen.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Posts a message to a channel, or follows channels as messages come.
    #[command(subcommand)]
    Messages(messages::MessagesCommand),
    /// Asks a sessiond whether it is SERVING: exit 0 if so, 4 if not.
    Health(health::HealthArgs),
    /// Prints this CLI's version and the server's (GetServerInfo: its
    /// version, build and store); `--client` asks no server.
    Version(health::VersionArgs),
}

/// Runs one admin command and answers its exit code; what went wrong is
/// on standard error.
pub async fn run(command: AdminCommand, api_key_from_env: Option<crate::settings::Secret>) -> ExitCode {
    let result = match command {
        AdminCommand::Sessions(command) => sessions::run(command, api_key_from_env).await,
        AdminCommand::Logs(command) => logs::run(command, api_key_from_env).await,
        AdminCommand::Events(command) => events::run(command, api_key_from_env).await,
        AdminCommand::Messages(command) => messages::run(command, api_key_from_env).await,
        AdminCommand::Health(args) => health::health(args).await,
        AdminCommand::Version(args) => health::version(args, api_key_from_env).await,
    };
    match result {
        Ok(()) => ExitCode::Ok,
        Err(failure) => {
            failure.report();
            failure.code()
        }
    }
}
