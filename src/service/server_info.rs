//! What the running sessiond is: its version, how it was built, the store
//! it keeps its data in and since when it runs. GetServerInfo answers it
//! to any authenticated caller, and the console shows it.

use crate::auth::Caller;
use crate::clock::UnixMillis;

use super::Service;

/// Where sessiond keeps its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded SQLite store in `--data-dir`.
    #[default]
    Embedded,
    /// PostgreSQL at `--database-url`.
    Postgres,
}

impl StoreKind {
    /// The name operators read: `embedded` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Postgres => "postgres",
        }
    }

    /// The schema version this binary brings a store of this kind to.
    pub fn schema_version(self) -> u32 {
        match self {
            StoreKind::Embedded => crate::store::sqlite::SCHEMA_VERSION,
            StoreKind::Postgres => crate::store::postgres::SCHEMA_VERSION,
        }
    }
}

/// The facts of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The crate's version, as `sessiond --version` prints it.
    pub version: &'static str,
    /// `release` or `debug`.
    pub build_profile: &'static str,
    /// The Rust target triple built for.
    pub build_target: &'static str,
    pub store: StoreKind,
    pub schema_version: u32,
    /// When the service was built, as the process started.
    pub started_at: UnixMillis,
}

/// sessiond's version, the same in the CLI and the server (one binary).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Service {
    /// This process's facts. Every caller may know them: having passed
    /// authentication is enough, whatever its role or tenant.
    pub fn server_info(&self, _caller: &Caller) -> ServerInfo {
        let store = self.inner.config.store;
        ServerInfo {
            version: VERSION,
            build_profile: env!("BUILD_PROFILE"),
            build_target: env!("BUILD_TARGET"),
            store,
            schema_version: store.schema_version(),
            started_at: self.inner.started_at,
        }
    }
}
