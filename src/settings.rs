//! All configuration, in one typed struct, from flags and `SESSIOND_*`
//! environment variables (what the Helm chart sets). Nothing else in
//! sessiond reads the environment. Values are checked here, at start-up.
//!
//! [`Settings`] is made of groups, each flattened into the one command
//! line: [`ServerSettings`], [`AuthSettings`], [`TransportSettings`],
//! [`StoreSettings`], [`LimitSettings`], [`SessionLogSettings`],
//! [`MessageSettings`] and [`TelemetrySettings`]. A new flag goes into the
//! group it belongs to. Defaults live in the flags alone: whatever else
//! needs them (the Postgres settings, tests, the benchmark) takes them from
//! here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::{LogLevel, LogPolicies, LogPolicy, RoleBook, SessionKind, StorageLimits};
use crate::service::{KindDefaults, Limits, ServiceConfig};

/// The roles file used when none is configured, if it exists.
pub const DEFAULT_ROLES_FILE: &str = "config/roles.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warning => LogLevel::Warning,
            Level::Error => LogLevel::Error,
            Level::Fatal => LogLevel::Fatal,
        }
    }
}

/// `--log-keep-level`: a level, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeepLevel {
    None,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl From<KeepLevel> for Option<LogLevel> {
    fn from(level: KeepLevel) -> Self {
        match level {
            KeepLevel::None => None,
            KeepLevel::Debug => Some(LogLevel::Debug),
            KeepLevel::Info => Some(LogLevel::Info),
            KeepLevel::Warning => Some(LogLevel::Warning),
            KeepLevel::Error => Some(LogLevel::Error),
            KeepLevel::Fatal => Some(LogLevel::Fatal),
        }
    }
}

/// A comma-separated list of session kinds, or `none`.
fn parse_kinds(text: &str) -> anyhow::Result<Vec<SessionKind>> {
    match text.trim() {
        "" | "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|name| SessionKind::from_name(name.trim()).with_context(|| format!("unknown session kind {name:?}")))
            .collect(),
    }
}

pub use crate::secret::Secret;

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Applies the Postgres migrations (needs --database-url) and exits.
    /// Safe to run from several replicas at once.
    Migrate,
    /// Prints the hash of an API key read from standard input, for the API
    /// keys file; with --generate, makes a new key and prints both. A key
    /// read must carry at least 256 bits: 64 hex digits, or 43 base64 or
    /// base64url characters, after an optional `sdk_` prefix.
    HashKey {
        /// Make a new random key.
        #[arg(long)]
        generate: bool,
        /// Print a salted argon2id hash (PHC string) instead of `sha256:`.
        #[arg(long)]
        argon2: bool,
        /// Hash a key read from standard input even if it is too short to
        /// carry 256 bits: only for migrating existing keys.
        #[arg(long)]
        allow_weak: bool,
    },
    /// Asks a running sessiond's grpc.health.v1 whether it is SERVING
    /// (exit 0) or not (exit 1): an exec probe and the image's HEALTHCHECK.
    /// Speaks TLS when --tls-cert (SESSIOND_TLS_CERT) is set.
    Probe(crate::probe::ProbeArgs),
    /// The admin CLI: sessions, logs, events, health, version.
    #[command(flatten)]
    Admin(crate::cli::AdminCommand),
}

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// An IP address and port, or `localhost:PORT` for 127.0.0.1.
fn listen_address(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => text.parse(),
    }
}

/// Whether only this machine can reach `address`: 127.0.0.0/8 or ::1
/// (also as an IPv4-mapped IPv6 address).
pub fn is_loopback(address: &SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

/// sessiond: sessions, privileges, storage and logs for services in any
/// language, over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "sessiond", version, about)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub server: ServerSettings,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub transport: TransportSettings,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub limits: LimitSettings,

    #[command(flatten)]
    pub session_logs: SessionLogSettings,

    #[command(flatten)]
    pub messages: MessageSettings,

    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// Where sessiond serves, and to whom: its addresses, browsers' origins, how
/// it stops.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Serving")]
pub struct ServerSettings {
    /// Address to serve gRPC on (`localhost:PORT` is 127.0.0.1:PORT). Any
    /// address but a loopback one needs authentication (--api-keys-file or
    /// --tls-client-ca) or --allow-unauthenticated.
    #[arg(long, env = "SESSIOND_LISTEN", value_parser = listen_address, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Serve without authentication on an address other than loopback:
    /// every caller is then an admin of tenant `default`. Logged as a
    /// warning at every start.
    #[arg(long, env = "SESSIOND_ALLOW_UNAUTHENTICATED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_unauthenticated: bool,

    /// Address to serve the web console on (HTTP; HTTPS with --tls-cert),
    /// e.g. `127.0.0.1:8080`. Unset: not served. Its users sign in with an
    /// admin API key.
    #[arg(long, env = "SESSIOND_CONSOLE_LISTEN", value_parser = listen_address)]
    pub console_listen: Option<SocketAddr>,

    /// Origins whose browser pages may call sessiond over gRPC-Web and
    /// Connect (CORS), comma-separated, e.g. `https://app.example.com`;
    /// `*` allows any origin. Default: none.
    #[arg(long, env = "SESSIOND_CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = cors_origin)]
    pub cors_allowed_origins: Vec<String>,

    /// On SIGTERM, how long in-flight calls may take to finish.
    #[arg(long, env = "SESSIOND_DRAIN_TIMEOUT", value_parser = duration, default_value = "20s")]
    pub drain_timeout: Duration,
}

/// Who may call: API keys, TLS and client certificates, roles, and how often
/// their files are reloaded.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Authentication and TLS")]
pub struct AuthSettings {
    /// API keys file (YAML or JSON; hashes from `sessiond hash-key`), each
    /// key bound to a tenant and a role. Unset: no authentication (every
    /// caller is an admin of tenant `default`), which sessiond allows only
    /// on loopback, with --tls-client-ca, or with --allow-unauthenticated.
    #[arg(long, env = "SESSIOND_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Server certificate (PEM) for TLS. With --tls-key, sessiond serves
    /// TLS only.
    #[arg(long, env = "SESSIOND_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Server private key (PEM) for TLS.
    #[arg(long, env = "SESSIOND_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) whose client certificates are accepted (mutual TLS, a way in
    /// besides API keys: see `cert_sha256` in the keys file). Without a keys
    /// file every caller must present a certificate signed by it.
    #[arg(long, env = "SESSIOND_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the API keys file and the TLS files are checked for a
    /// change (their modification time and content, through symlinks); a
    /// changed file is reloaded as on SIGHUP. `0s`: only on SIGHUP.
    #[arg(long, env = "SESSIOND_RELOAD_INTERVAL", value_parser = duration, default_value = "5s")]
    pub reload_interval: Duration,

    /// Roles file (YAML or JSON). Default: config/roles.yaml when present,
    /// else no privileges. A configured file that cannot be loaded stops
    /// start-up; SIGHUP reloads it.
    #[arg(long, env = "SESSIOND_ROLES_FILE")]
    pub roles_file: Option<PathBuf>,
}

/// How connections and HTTP/2 streams are held: handshakes, keepalives, ages,
/// request sizes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connections")]
pub struct TransportSettings {
    /// How long a new connection may take to begin HTTP/2 (send the client
    /// preface) or, with TLS, to complete the TLS handshake before it is
    /// closed.
    #[arg(long, env = "SESSIOND_HANDSHAKE_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// HTTP/2 streams (calls) open at once on one connection.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,

    /// HTTP/2 keepalive ping interval; a peer that does not answer within
    /// --keepalive-timeout is disconnected.
    #[arg(long, env = "SESSIOND_KEEPALIVE_INTERVAL", value_parser = duration, default_value = "30s")]
    pub keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered.
    #[arg(long, env = "SESSIOND_KEEPALIVE_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub keepalive_timeout: Duration,

    /// Connections are closed gracefully after this age, so clients
    /// reconnect and spread over new replicas.
    #[arg(long, env = "SESSIOND_MAX_CONNECTION_AGE", value_parser = duration, default_value = "10m")]
    pub max_connection_age: Duration,

    /// How long a connection past --max-connection-age may keep its calls
    /// (watch streams) before it is closed: its streams then end with an
    /// error and clients reconnect, resuming watches by sequence.
    #[arg(long, env = "SESSIOND_MAX_CONNECTION_AGE_GRACE", value_parser = duration, default_value = "30s")]
    pub max_connection_age_grace: Duration,

    /// Largest request message accepted, in bytes.
    #[arg(long, env = "SESSIOND_MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,
}

/// Where sessions are kept (the embedded store or Postgres), the cache in
/// front, and how long what ended is kept.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreSettings {
    /// Directory of the embedded store (used when no database URL is set).
    #[arg(long, env = "SESSIOND_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Postgres connection string (URL or key=value). Set: sessiond stores
    /// in Postgres and may run as several replicas; unset: the embedded
    /// store.
    #[arg(long, env = "SESSIOND_DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<Secret>,

    /// File holding the Postgres connection string, as a mounted Secret
    /// does; one trailing newline is ignored. Read at start-up; not with
    /// --database-url.
    #[arg(long, env = "SESSIOND_DATABASE_URL_FILE", global = true, conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,

    /// Postgres connections per replica.
    #[arg(long, env = "SESSIOND_DB_POOL_SIZE", default_value_t = 16, global = true)]
    pub db_pool_size: usize,

    /// Longest wait to connect to Postgres, or for a pooled connection,
    /// before a call fails with UNAVAILABLE.
    #[arg(long, env = "SESSIOND_DB_CONNECT_TIMEOUT", value_parser = duration, default_value = "2s", global = true)]
    pub db_connect_timeout: Duration,

    /// Postgres cancels statements running longer.
    #[arg(long, env = "SESSIOND_DB_STATEMENT_TIMEOUT", value_parser = duration, default_value = "10s", global = true)]
    pub db_statement_timeout: Duration,

    /// Sessions held in the in-process cache.
    #[arg(long, env = "SESSIOND_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,

    /// How often the sweeper ends expired sessions and purges old ones.
    #[arg(long, env = "SESSIOND_SWEEP_INTERVAL", value_parser = duration, default_value = "5s")]
    pub sweep_interval: Duration,

    /// Longest time activity stays in memory before it is written.
    #[arg(long, env = "SESSIOND_ACTIVITY_FLUSH", value_parser = duration, default_value = "30s")]
    pub activity_flush: Duration,

    /// How long ended sessions and their logs are kept.
    #[arg(long, env = "SESSIOND_RETENTION", value_parser = duration, default_value = "7days")]
    pub retention: Duration,

    /// How long events are kept for WatchSessions to resume from.
    #[arg(long, env = "SESSIOND_EVENT_RETENTION", value_parser = duration, default_value = "1day")]
    pub event_retention: Duration,

    /// How long a request id (CreateSession, Log, StreamLog) is remembered:
    /// a retry within it is answered the first answer.
    #[arg(long, env = "SESSIOND_IDEMPOTENCY_WINDOW", value_parser = duration, default_value = "1day")]
    pub idempotency_window: Duration,
}

/// Bounds on calls, callers and request contents, and per-kind timeouts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitSettings {
    /// Longest a call may take to be answered: a unary call or a client
    /// stream in full, a server stream until it starts. A client's shorter
    /// `grpc-timeout` wins, and bounds a server stream too. Past it:
    /// DEADLINE_EXCEEDED.
    #[arg(long, env = "SESSIOND_MAX_CALL_DURATION", value_parser = duration, default_value = "30s")]
    pub max_call_duration: Duration,

    /// Calls in progress at once across all connections, streams counted
    /// for their whole life; more are shed at once with RESOURCE_EXHAUSTED
    /// rather than queued. Health and reflection are never counted.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_CALLS", default_value_t = 2048)]
    pub max_concurrent_calls: usize,

    /// Calls in progress at once per API key (the key entry's
    /// `max_concurrent_calls` overrides it); more are refused with
    /// RESOURCE_EXHAUSTED (KEY_OVERLOADED). Default: a quarter of
    /// --max-concurrent-calls.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_CALLS_PER_KEY")]
    pub max_concurrent_calls_per_key: Option<usize>,

    /// Calls in progress at once per tenant, all its keys together; more
    /// are refused with RESOURCE_EXHAUSTED (TENANT_OVERLOADED). Default:
    /// half of --max-concurrent-calls.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_CALLS_PER_TENANT")]
    pub max_concurrent_calls_per_tenant: Option<usize>,

    /// Server streams (WatchSessions, FollowLogs, Subscribe) open at once
    /// per API key (the key entry's `max_streams` overrides it); more are
    /// refused with RESOURCE_EXHAUSTED (KEY_STREAM_QUOTA). The default is
    /// half the default share of calls per key, so a key's streams leave
    /// room for its unary calls.
    #[arg(long, env = "SESSIOND_MAX_STREAMS_PER_KEY", default_value_t = 256)]
    pub max_streams_per_key: usize,

    /// Calls an API key may start per second (a token bucket holding one
    /// second's calls, so bursts up to that many); more are refused with
    /// RESOURCE_EXHAUSTED (RATE_LIMITED) and a retry delay. 0: no limit.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_PER_KEY", default_value_t = 0)]
    pub rate_limit_per_key: u32,

    /// Calls a tenant may start per second, all its keys together, as
    /// --rate-limit-per-key. 0: no limit.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_PER_TENANT", default_value_t = 0)]
    pub rate_limit_per_tenant: u32,

    /// Longest accepted text field (user id, labels, close error), in bytes.
    #[arg(long, env = "SESSIOND_MAX_TEXT_BYTES", default_value_t = 1024)]
    pub max_text_bytes: usize,

    /// Longest storage key, in bytes.
    #[arg(long, env = "SESSIOND_STORAGE_MAX_KEY_BYTES", default_value_t = 256)]
    pub storage_max_key_bytes: usize,

    /// Largest storage value (as JSON), in bytes.
    #[arg(long, env = "SESSIOND_STORAGE_MAX_VALUE_BYTES", default_value_t = 64 * 1024)]
    pub storage_max_value_bytes: usize,

    /// Most storage keys per session.
    #[arg(long, env = "SESSIOND_STORAGE_MAX_KEYS", default_value_t = 1_000)]
    pub storage_max_keys: usize,

    /// Most storage bytes (keys and values) per session.
    #[arg(long, env = "SESSIOND_STORAGE_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub storage_max_bytes: usize,

    /// Longest promotion.
    #[arg(long, env = "SESSIOND_MAX_PROMOTION", value_parser = duration, default_value = "1day")]
    pub max_promotion: Duration,

    /// Promotions in force at once on one session; Promote past it is
    /// RESOURCE_EXHAUSTED (QuotaFailure on `promotions`).
    #[arg(long, env = "SESSIOND_MAX_PROMOTIONS_PER_SESSION", default_value_t = 100)]
    pub max_promotions_per_session: usize,

    /// Open sessions one tenant may hold at once, counted across every
    /// replica sharing the store; CreateSession past it is
    /// RESOURCE_EXHAUSTED (TENANT_SESSION_QUOTA). 0: no limit.
    #[arg(long, env = "SESSIOND_MAX_OPEN_SESSIONS_PER_TENANT", default_value_t = 1_000_000)]
    pub max_open_sessions_per_tenant: u64,

    /// Log entries one tenant may hold, in its open sessions' logs and the
    /// kept logs of its ended ones until they are purged, counted across
    /// every replica sharing the store; a Log or StreamLog batch that would
    /// take it past this is refused whole, RESOURCE_EXHAUSTED
    /// (TENANT_LOG_QUOTA). 0: no limit.
    #[arg(long, env = "SESSIOND_MAX_LOG_ENTRIES_PER_TENANT", default_value_t = 100_000_000)]
    pub max_log_entries_per_tenant: u64,

    /// Largest page of ListSessions and QueryLogs.
    #[arg(long, env = "SESSIOND_MAX_PAGE_SIZE", default_value_t = 1_000)]
    pub max_page_size: usize,

    /// Per-kind default timeouts, e.g. `web_user.idle=30m,internal.lifetime=none`.
    #[arg(long, env = "SESSIOND_KIND_TIMEOUTS", default_value = "")]
    pub kind_timeouts: String,
}

/// Which session logs are kept and how large they may grow: the logs sessiond
/// keeps for its callers' sessions, not its own (see [`TelemetrySettings`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Session logs")]
pub struct SessionLogSettings {
    /// Log policy file with overrides per kind and endpoint (YAML or JSON).
    ///
    /// Formerly --log-policy-file, SESSIOND_LOG_POLICY_FILE (deprecated).
    #[arg(long = "session-log-policy-file", alias = "log-policy-file", env = "SESSIOND_SESSION_LOG_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Entries below this level are dropped.
    ///
    /// Formerly --log-min-level, SESSIOND_LOG_MIN_LEVEL (deprecated).
    #[arg(
        long = "session-log-min-level",
        alias = "log-min-level",
        env = "SESSIOND_SESSION_LOG_MIN_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub min_level: Level,

    /// Keep the log of every session.
    ///
    /// Formerly --log-keep-all, SESSIOND_LOG_KEEP_ALL (deprecated).
    #[arg(long = "session-log-keep-all", alias = "log-keep-all", env = "SESSIOND_SESSION_LOG_KEEP_ALL", default_value_t = false, action = clap::ArgAction::Set)]
    pub keep_all: bool,

    /// Keep the logs of sessions that ran longer than the slow threshold.
    ///
    /// Formerly --log-keep-slow, SESSIOND_LOG_KEEP_SLOW (deprecated).
    #[arg(long = "session-log-keep-slow", alias = "log-keep-slow", env = "SESSIOND_SESSION_LOG_KEEP_SLOW", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_slow: bool,

    /// What counts as a slow session.
    ///
    /// Formerly --log-slow-threshold, SESSIOND_LOG_SLOW_THRESHOLD (deprecated).
    #[arg(long = "session-log-slow-threshold", alias = "log-slow-threshold", env = "SESSIOND_SESSION_LOG_SLOW_THRESHOLD", value_parser = duration, default_value = "1s")]
    pub slow_threshold: Duration,

    /// Keep the logs of sessions closed with an error.
    ///
    /// Formerly --log-keep-failed, SESSIOND_LOG_KEEP_FAILED (deprecated).
    #[arg(long = "session-log-keep-failed", alias = "log-keep-failed", env = "SESSIOND_SESSION_LOG_KEEP_FAILED", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_failed: bool,

    /// Keep the logs of sessions with an entry at or above this level
    /// (`none`: not by level).
    ///
    /// Formerly --log-keep-level, SESSIOND_LOG_KEEP_LEVEL (deprecated).
    #[arg(
        long = "session-log-keep-level",
        alias = "log-keep-level",
        env = "SESSIOND_SESSION_LOG_KEEP_LEVEL",
        value_enum,
        default_value = "error"
    )]
    pub keep_level: KeepLevel,

    /// Kinds whose entries are readable (QueryLogs, FollowLogs) while the
    /// session is open, comma-separated, or `none`; a policy file's
    /// `continuous` overrides it per kind and endpoint.
    ///
    /// Formerly --log-continuous-kinds, SESSIOND_LOG_CONTINUOUS_KINDS (deprecated).
    #[arg(
        long = "session-log-continuous-kinds",
        alias = "log-continuous-kinds",
        env = "SESSIOND_SESSION_LOG_CONTINUOUS_KINDS",
        default_value = "method_stream,streaming,future_call,internal,web_user,remote_user,stored_procedure,standalone"
    )]
    pub continuous_kinds: String,

    /// Most log entries per Log call or stream message.
    ///
    /// Formerly --log-max-entries, SESSIOND_LOG_MAX_ENTRIES (deprecated).
    #[arg(
        long = "session-log-max-entries",
        alias = "log-max-entries",
        env = "SESSIOND_SESSION_LOG_MAX_ENTRIES",
        default_value_t = 1_000
    )]
    pub max_entries: usize,

    /// Longest log message, exception or stack trace, in bytes.
    ///
    /// Formerly --log-max-message-bytes, SESSIOND_LOG_MAX_MESSAGE_BYTES (deprecated).
    #[arg(long = "session-log-max-message-bytes", alias = "log-max-message-bytes", env = "SESSIOND_SESSION_LOG_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Entries one session's log may hold; a Log or StreamLog batch that
    /// would take it past this is refused whole, RESOURCE_EXHAUSTED
    /// (SESSION_LOG_QUOTA). 0: no limit.
    ///
    /// Formerly --log-max-entries-per-session, SESSIOND_LOG_MAX_ENTRIES_PER_SESSION (deprecated).
    #[arg(
        long = "session-log-max-entries-per-session",
        alias = "log-max-entries-per-session",
        env = "SESSIOND_SESSION_LOG_MAX_ENTRIES_PER_SESSION",
        default_value_t = 100_000
    )]
    pub max_entries_per_session: u64,
}

/// Bounds and windows of channel messages.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Channel messages")]
pub struct MessageSettings {
    /// Largest channel message: its payload as JSON plus its type name, in
    /// bytes.
    #[arg(long, env = "SESSIOND_MESSAGE_MAX_BYTES", default_value_t = 64 * 1024)]
    pub message_max_bytes: usize,

    /// Most channels one Subscribe call may follow.
    #[arg(long, env = "SESSIOND_MESSAGE_MAX_CHANNELS", default_value_t = 64)]
    pub message_max_channels: usize,

    /// Most Subscribe streams one replica serves at once.
    #[arg(long, env = "SESSIOND_MESSAGE_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    pub message_max_subscribers: usize,

    /// Messages a subscriber may fall behind before it is cut off
    /// (RESOURCE_EXHAUSTED, SUBSCRIBER_TOO_SLOW).
    #[arg(long, env = "SESSIOND_MESSAGE_SUBSCRIBER_BUFFER", default_value_t = 1_024)]
    pub message_subscriber_buffer: usize,

    /// Posts per second per API key (as many may come at once).
    #[arg(long, env = "SESSIOND_MESSAGE_POST_RATE", default_value_t = 1_000)]
    pub message_post_rate: u32,

    /// How long global channel messages are kept for subscribers to resume
    /// from.
    #[arg(long, env = "SESSIOND_MESSAGE_REPLAY_WINDOW", value_parser = duration, default_value = "5m")]
    pub message_replay_window: Duration,
}

/// sessiond's own logs, traces and metrics.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Own logs and telemetry")]
pub struct TelemetrySettings {
    /// Log output format.
    #[arg(long, env = "SESSIOND_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "SESSIOND_LOG", default_value = "info")]
    pub log_filter: String,

    /// How far apart repeated failures of one cause are logged, with the
    /// count of those in between; `0s` logs every failure.
    #[arg(long, env = "SESSIOND_LOG_REPEAT_INTERVAL", value_parser = duration, default_value = "10s")]
    pub log_repeat_interval: Duration,

    /// OpenTelemetry collector to export traces and metrics to over
    /// OTLP/gRPC, e.g. `http://otel-collector:4317`. Takes precedence over
    /// OTEL_EXPORTER_OTLP_ENDPOINT and its _TRACES_/_METRICS_ forms; with
    /// none of them set: no export.
    #[arg(long, env = "SESSIOND_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The `service.name` resource of exported traces and metrics. Takes
    /// precedence over OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
    /// with none of them: `sessiond`.
    #[arg(long, env = "SESSIOND_OTLP_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,

    /// Which standard OpenTelemetry endpoint variables are set.
    #[arg(skip = OtelEndpoints::from_env())]
    pub otel_endpoints: OtelEndpoints,

    /// Address to serve Prometheus metrics on, at `/metrics`, e.g.
    /// `0.0.0.0:9090`. Unset: not served.
    #[arg(long, env = "SESSIOND_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Whether the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables ask for
/// an export of traces and of metrics. The OpenTelemetry SDK reads their
/// values itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtelEndpoints {
    pub traces: bool,
    pub metrics: bool,
}

impl OtelEndpoints {
    fn from_env() -> Self {
        let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
        let both = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        Self {
            traces: both || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            metrics: both || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        }
    }
}

/// The session-log settings' former variables, from before they were
/// named apart from sessiond's own log settings: (argument id, flag,
/// former variable). Deprecated; each flag's former name is its hidden
/// alias. A setting's own variable wins over its former one.
pub const FORMER_VARIABLES: [(&str, &str, &str); 11] = [
    ("policy_file", "session-log-policy-file", "SESSIOND_LOG_POLICY_FILE"),
    ("min_level", "session-log-min-level", "SESSIOND_LOG_MIN_LEVEL"),
    ("keep_all", "session-log-keep-all", "SESSIOND_LOG_KEEP_ALL"),
    ("keep_slow", "session-log-keep-slow", "SESSIOND_LOG_KEEP_SLOW"),
    ("slow_threshold", "session-log-slow-threshold", "SESSIOND_LOG_SLOW_THRESHOLD"),
    ("keep_failed", "session-log-keep-failed", "SESSIOND_LOG_KEEP_FAILED"),
    ("keep_level", "session-log-keep-level", "SESSIOND_LOG_KEEP_LEVEL"),
    ("continuous_kinds", "session-log-continuous-kinds", "SESSIOND_LOG_CONTINUOUS_KINDS"),
    ("max_entries", "session-log-max-entries", "SESSIOND_LOG_MAX_ENTRIES"),
    ("max_message_bytes", "session-log-max-message-bytes", "SESSIOND_LOG_MAX_MESSAGE_BYTES"),
    ("max_entries_per_session", "session-log-max-entries-per-session", "SESSIOND_LOG_MAX_ENTRIES_PER_SESSION"),
];

/// Prefixes of `SESSIOND_*` variables that are not settings (scripts and
/// tests use them); any other `SESSIOND_*` variable must name a setting.
pub const RESERVED_PREFIXES: [&str; 8] = [
    "SESSIOND_TEST",
    "SESSIOND_BENCH",
    "SESSIOND_BIN",
    "SESSIOND_PG_",
    "SESSIOND_TOOLS",
    "SESSIOND_HOME",
    "SESSIOND_ADDR",
    "SESSIOND_PID",
];

/// An origin as browsers send it (`scheme://host[:port]`, no path), or `*`.
fn cors_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.to_owned());
    }
    let valid = value.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not an origin: scheme://host[:port] (http or https, no path), or *"))
    }
}

impl Settings {
    /// The settings from the command line and the environment, checked:
    /// an unknown `SESSIOND_*` variable is refused and secrets given as
    /// files are read.
    pub fn load() -> anyhow::Result<Self> {
        check_environment(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))?;
        let variable = |name: &str| std::env::var_os(name);
        let mut settings = Settings::parse_with(std::env::args_os(), variable).unwrap_or_else(|err| err.exit());
        settings.read_secret_files()?;
        Ok(settings)
    }

    /// Parses `args` as clap does, flags first, then their variables, then
    /// defaults; a session-log setting still at its default is then taken
    /// from its former variable ([`FORMER_VARIABLES`]) when `variable`
    /// finds that set.
    pub fn parse_with(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
        variable: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let matches = Settings::command().try_get_matches_from(&args)?;
        let mut former = Vec::new();
        for (id, flag, name) in FORMER_VARIABLES {
            let unset = matches!(matches.value_source(id), None | Some(clap::parser::ValueSource::DefaultValue));
            if let (true, Some(value)) = (unset, variable(name)) {
                let mut arg = std::ffi::OsString::from(format!("--{flag}="));
                arg.push(value);
                former.push(arg);
            }
        }
        if former.is_empty() {
            return Settings::from_arg_matches(&matches);
        }
        // Before any subcommand, where the session-log flags belong.
        let at = args.len().min(1);
        args.splice(at..at, former);
        Settings::from_arg_matches(&Settings::command().try_get_matches_from(args)?)
    }

    /// The admin CLI's API key, from `SESSIOND_CLI_API_KEY` only: a flag's
    /// value would show in `ps`.
    pub fn cli_api_key() -> Option<Secret> {
        std::env::var(crate::cli::connect::API_KEY_VARIABLE).ok().map(Secret::from)
    }

    /// Reads the secrets given as files (`--database-url-file`). The
    /// content never appears in an error, only the file's name.
    pub fn read_secret_files(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.store.database_url_file {
            self.store.database_url = Some(read_secret_file(path, "--database-url-file")?);
        }
        Ok(())
    }

    /// Settings with every default, listening where `listen` says and
    /// storing in `data_dir`: what tests start from.
    pub fn for_tests(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let mut settings = Settings::parse_from(["sessiond"]);
        settings.server.listen = listen;
        settings.store.data_dir = data_dir;
        settings
    }

    /// Each caller's share: the per-key and per-tenant limits, their
    /// defaults derived from --max-concurrent-calls so that one key leaves
    /// three quarters of the calls to others and one tenant half.
    pub fn fairness_limits(&self) -> crate::grpc::fairness::FairnessLimits {
        crate::grpc::fairness::FairnessLimits {
            max_concurrent_calls_per_key: self
                .limits
                .max_concurrent_calls_per_key
                .unwrap_or_else(|| (self.limits.max_concurrent_calls / 4).max(1)),
            max_concurrent_calls_per_tenant: self
                .limits
                .max_concurrent_calls_per_tenant
                .unwrap_or_else(|| (self.limits.max_concurrent_calls / 2).max(1)),
            rate_limit_per_key: self.limits.rate_limit_per_key,
            rate_limit_per_tenant: self.limits.rate_limit_per_tenant,
            max_streams_per_key: self.limits.max_streams_per_key,
        }
    }

    /// The API keys, when a keys file is configured. A file that does not
    /// load stops start-up: sessiond never falls back to running open.
    pub fn load_api_keys(&self) -> anyhow::Result<Option<crate::auth::ApiKeys>> {
        match &self.auth.api_keys_file {
            Some(path) => {
                let keys = crate::auth::ApiKeys::load(path)
                    .with_context(|| format!("loading API keys file {}", path.display()))?;
                Ok(Some(keys))
            }
            None => Ok(None),
        }
    }

    /// Refuses to serve without authentication where other machines could
    /// call: without a keys file or a client CA, only a loopback address
    /// may serve, unless --allow-unauthenticated says so, which is logged
    /// as a warning at every start.
    pub fn check_authentication(&self, keys: Option<&crate::auth::ApiKeys>) -> anyhow::Result<()> {
        if keys.is_some() {
            return Ok(());
        }
        if self.auth.tls_client_ca.is_some() {
            tracing::info!("no API keys file: every caller presents a client certificate signed by the client CA");
            return Ok(());
        }
        if is_loopback(&self.server.listen) {
            tracing::warn!("no API keys file: every caller is an admin of tenant 'default' (serving on loopback only)");
            return Ok(());
        }
        if self.server.allow_unauthenticated {
            tracing::warn!(
                address = %self.server.listen,
                "UNAUTHENTICATED: --allow-unauthenticated serves without API keys on an address other machines can reach; every caller is an admin of tenant 'default'"
            );
            return Ok(());
        }
        bail!(
            "refusing to serve on {} without authentication: every caller would be an admin of tenant 'default'. \
             Give an API keys file (--api-keys-file, SESSIOND_API_KEYS_FILE) or a client CA for mutual TLS \
             (--tls-client-ca, SESSIOND_TLS_CLIENT_CA), listen on a loopback address, or serve open on purpose \
             with --allow-unauthenticated (SESSIOND_ALLOW_UNAUTHENTICATED=true)",
            self.server.listen
        )
    }

    /// Refuses a console nobody could sign in to, or one open to other
    /// machines: without an API keys file the console runs open (every
    /// visitor an admin of tenant `default`), like the API, and only on a
    /// loopback address unless --allow-unauthenticated says otherwise.
    pub fn check_console(&self, has_keys: bool) -> anyhow::Result<()> {
        let Some(address) = self.server.console_listen else { return Ok(()) };
        if has_keys {
            return Ok(());
        }
        if self.auth.tls_client_ca.is_some() {
            bail!(
                "the console at {address} needs an API keys file (--api-keys-file): its users sign in with an admin key"
            );
        }
        if is_loopback(&address) || self.server.allow_unauthenticated {
            tracing::warn!(%address, "no API keys file: the console is open, every visitor an admin of tenant 'default'");
            return Ok(());
        }
        bail!(
            "refusing to serve the console on {address} without authentication: every visitor would be an admin of \
             tenant 'default'. Give an API keys file (--api-keys-file, SESSIOND_API_KEYS_FILE), serve the console on \
             a loopback address, or serve open on purpose with --allow-unauthenticated"
        )
    }

    /// The Postgres settings, when a database URL is set: every value from
    /// these settings, the URL still secret.
    pub fn postgres(&self) -> Option<crate::store::postgres::PgSettings> {
        self.store.database_url.clone().map(|url| crate::store::postgres::PgSettings {
            url,
            pool_size: self.store.db_pool_size,
            connect_timeout: self.store.db_connect_timeout,
            statement_timeout: self.store.db_statement_timeout,
            max_log_entries_per_session: self.session_logs.max_entries_per_session,
            max_open_sessions_per_tenant: self.limits.max_open_sessions_per_tenant,
            max_log_entries_per_tenant: self.limits.max_log_entries_per_tenant,
        })
    }

    /// The Postgres settings for `url` with every other value at its
    /// default: what tests and the benchmark connect with, from the same
    /// defaults as the flags.
    pub fn default_postgres(url: impl Into<Secret>) -> crate::store::postgres::PgSettings {
        let mut settings = Settings::parse_from(["sessiond"]);
        settings.store.database_url = Some(url.into());
        // The URL was just set.
        settings.postgres().expect("a database URL is set")
    }

    /// Loads the role book: the configured file (which must load) or the
    /// default file when present.
    pub fn load_roles(&self) -> anyhow::Result<RoleBook> {
        match &self.auth.roles_file {
            Some(path) => RoleBook::load(path).with_context(|| format!("loading roles file {}", path.display())),
            None if std::path::Path::new(DEFAULT_ROLES_FILE).exists() => {
                RoleBook::load(DEFAULT_ROLES_FILE.as_ref()).context("loading roles file config/roles.yaml")
            }
            None => {
                tracing::warn!("no roles file; sessions can hold no privileges");
                Ok(RoleBook::default())
            }
        }
    }

    /// The domain service's configuration, checked.
    pub fn service_config(&self) -> anyhow::Result<ServiceConfig> {
        let base = LogPolicy {
            min_level: self.session_logs.min_level.into(),
            keep_all: self.session_logs.keep_all,
            keep_slow: self.session_logs.keep_slow,
            slow_threshold: self.session_logs.slow_threshold,
            keep_failed: self.session_logs.keep_failed,
            keep_level: self.session_logs.keep_level.into(),
            continuous: false,
        };
        let log_policies = match &self.session_logs.policy_file {
            Some(path) => {
                LogPolicies::load(path, base).with_context(|| format!("loading log policy file {}", path.display()))?
            }
            None => LogPolicies::new(base),
        }
        .with_continuous_kinds(
            parse_kinds(&self.session_logs.continuous_kinds).context("--session-log-continuous-kinds")?,
        );
        for (name, value) in [
            ("max-text-bytes", self.limits.max_text_bytes),
            ("storage-max-key-bytes", self.limits.storage_max_key_bytes),
            ("storage-max-value-bytes", self.limits.storage_max_value_bytes),
            ("storage-max-keys", self.limits.storage_max_keys),
            ("storage-max-bytes", self.limits.storage_max_bytes),
            ("session-log-max-entries", self.session_logs.max_entries),
            ("session-log-max-message-bytes", self.session_logs.max_message_bytes),
            ("max-page-size", self.limits.max_page_size),
            ("max-promotions-per-session", self.limits.max_promotions_per_session),
            ("max-streams-per-key", self.limits.max_streams_per_key),
            ("max-concurrent-calls", self.limits.max_concurrent_calls),
            ("max-concurrent-calls-per-key", self.limits.max_concurrent_calls_per_key.unwrap_or(1)),
            ("max-concurrent-calls-per-tenant", self.limits.max_concurrent_calls_per_tenant.unwrap_or(1)),
        ] {
            if value == 0 {
                bail!("--{name} must be positive");
            }
        }
        if self.store.sweep_interval.is_zero() || self.store.activity_flush.is_zero() {
            bail!("--sweep-interval and --activity-flush must be positive");
        }
        if self.transport.handshake_timeout.is_zero() || self.limits.max_call_duration.is_zero() {
            bail!("--handshake-timeout and --max-call-duration must be positive");
        }
        if self.store.idempotency_window.is_zero() {
            bail!("--idempotency-window must be positive");
        }
        let defaults = ServiceConfig::default();
        Ok(ServiceConfig {
            kind_defaults: parse_kind_timeouts(&self.limits.kind_timeouts, defaults.kind_defaults)?,
            limits: Limits {
                max_text_bytes: self.limits.max_text_bytes,
                max_promotion: self.limits.max_promotion,
                max_promotions_per_session: self.limits.max_promotions_per_session,
                max_log_entries_per_call: self.session_logs.max_entries,
                max_log_message_bytes: self.session_logs.max_message_bytes,
                max_page_size: self.limits.max_page_size,
                storage: StorageLimits {
                    max_key_bytes: self.limits.storage_max_key_bytes,
                    max_value_bytes: self.limits.storage_max_value_bytes,
                    max_keys: self.limits.storage_max_keys,
                    max_total_bytes: self.limits.storage_max_bytes,
                },
                ..defaults.limits
            },
            log_policies,
            activity_flush: self.store.activity_flush,
            retention: self.store.retention,
            event_retention: self.store.event_retention,
            idempotency_window: self.store.idempotency_window,
            cache_capacity: self.store.cache_capacity,
            store: match self.store.database_url {
                Some(_) => crate::service::server_info::StoreKind::Postgres,
                None => crate::service::server_info::StoreKind::Embedded,
            },
        })
    }
}

impl Settings {
    /// The configuration of channel messages, checked.
    pub fn message_config(&self) -> anyhow::Result<crate::service::messages::MessageConfig> {
        for (name, value) in [
            ("message-max-bytes", self.messages.message_max_bytes),
            ("message-max-channels", self.messages.message_max_channels),
            ("message-max-subscribers", self.messages.message_max_subscribers),
            ("message-subscriber-buffer", self.messages.message_subscriber_buffer),
            ("message-post-rate", self.messages.message_post_rate as usize),
        ] {
            if value == 0 {
                bail!("--{name} must be positive");
            }
        }
        if self.messages.message_replay_window.is_zero() {
            bail!("--message-replay-window must be positive");
        }
        Ok(crate::service::messages::MessageConfig {
            max_bytes: self.messages.message_max_bytes,
            max_channels: self.messages.message_max_channels,
            max_subscribers: self.messages.message_max_subscribers,
            buffer: self.messages.message_subscriber_buffer,
            post_rate: self.messages.message_post_rate,
            replay_window: self.messages.message_replay_window,
        })
    }
}

/// A secret read from `path`, without one trailing newline.
fn read_secret_file(path: &std::path::Path, flag: &str) -> anyhow::Result<Secret> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))?;
    let Ok(mut text) = String::from_utf8(bytes) else {
        bail!("{flag} {} is not UTF-8 text", path.display());
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        bail!("{flag} {} is empty", path.display());
    }
    Ok(Secret::from(text))
}

/// Every environment variable a setting reads, from clap's own description
/// of the command line (subcommands included), and the session-log
/// settings' former variables.
pub fn setting_variables() -> Vec<String> {
    fn collect(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env().and_then(|name| name.to_str()) {
                names.push(name.to_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, names);
        }
    }
    let mut names = vec![crate::cli::connect::API_KEY_VARIABLE.to_owned()];
    names.extend(FORMER_VARIABLES.iter().map(|(_, _, name)| name.to_string()));
    collect(&<Settings as clap::CommandFactory>::command(), &mut names);
    names.sort();
    names.dedup();
    names
}

/// Refuses a `SESSIOND_*` variable that names no setting (a mistyped
/// `SESSIOND_API_KEYS_FILE` would otherwise serve open), naming the
/// closest setting when one is close. [`RESERVED_PREFIXES`] are let by.
pub fn check_environment(names: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let known = setting_variables();
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| name.starts_with("SESSIOND_"))
        .filter(|name| !RESERVED_PREFIXES.iter().any(|prefix| name.starts_with(prefix)))
        .filter(|name| !known.contains(name))
        .collect();
    unknown.sort();
    let Some(name) = unknown.first() else { return Ok(()) };
    let closest = known
        .iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .min()
        .filter(|(distance, _)| *distance <= 3)
        .map(|(_, candidate)| format!(" (did you mean {candidate}?)"))
        .unwrap_or_default();
    let others = match unknown.len() {
        1 => String::new(),
        n => format!(" and {} more: {}", n - 1, unknown[1..].join(", ")),
    };
    bail!(
        "unknown environment variable {name}{closest}{others}: every SESSIOND_* variable must name a setting \
         (see sessiond --help)"
    )
}

/// Parses `kind.idle=DUR` / `kind.lifetime=DUR|none` pairs over defaults.
fn parse_kind_timeouts(
    text: &str,
    mut defaults: HashMap<SessionKind, KindDefaults>,
) -> anyhow::Result<HashMap<SessionKind, KindDefaults>> {
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').with_context(|| format!("kind timeout {pair:?} is not key=value"))?;
        let (kind, which) =
            key.split_once('.').with_context(|| format!("kind timeout {key:?} is not kind.idle or kind.lifetime"))?;
        let kind = SessionKind::from_name(kind).with_context(|| format!("unknown session kind {kind:?}"))?;
        let value = match value {
            "none" => None,
            v => Some(humantime::parse_duration(v).with_context(|| format!("bad duration {v:?}"))?),
        };
        // The map holds every kind: `ServiceConfig::default` fills it.
        let entry = defaults.get_mut(&kind).context("every kind has defaults")?;
        match which {
            "idle" => entry.idle_timeout = value,
            "lifetime" => entry.lifetime = value,
            other => bail!("kind timeout {other:?} is neither idle nor lifetime"),
        }
    }
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_timeouts_override_the_defaults() {
        let parsed =
            parse_kind_timeouts("web_user.idle=30m, internal.lifetime=none", ServiceConfig::default().kind_defaults)
                .unwrap();
        assert_eq!(parsed[&SessionKind::WebUser].idle_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(parsed[&SessionKind::Internal].lifetime, None);
        assert!(parse_kind_timeouts("nope.idle=1s", ServiceConfig::default().kind_defaults).is_err());
    }

    #[test]
    fn an_open_console_is_refused_beyond_loopback_and_with_certificates_only() {
        let check = |args: &[&str], has_keys: bool| {
            Settings::parse_from(["sessiond"].iter().chain(args)).check_console(has_keys)
        };
        assert!(check(&[], false).is_ok(), "no console, nothing to check");
        assert!(check(&["--console-listen", "localhost:8080"], false).is_ok());
        assert!(check(&["--console-listen", "0.0.0.0:8080"], true).is_ok());
        let refused = check(&["--console-listen", "0.0.0.0:8080"], false).expect_err("open beyond loopback");
        assert!(refused.to_string().contains("0.0.0.0:8080"), "{refused}");
        assert!(check(&["--console-listen", "0.0.0.0:8080", "--allow-unauthenticated"], false).is_ok());
        let args = ["--console-listen", "127.0.0.1:8080", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"];
        let refused = check(&args, false).expect_err("nobody could sign in");
        assert!(refused.to_string().contains("--api-keys-file"), "{refused}");
    }

    #[test]
    fn serving_open_is_refused_beyond_loopback_unless_allowed() {
        let open = |args: &[&str]| {
            let settings = Settings::parse_from(["sessiond"].iter().chain(args));
            settings.check_authentication(None)
        };
        for address in ["127.0.0.1:50051", "127.0.0.2:1", "[::1]:50051", "localhost:50051", "[::ffff:127.0.0.1]:1"] {
            assert!(open(&["--listen", address]).is_ok(), "{address} is loopback");
        }
        for address in ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"] {
            let refused = open(&["--listen", address]).expect_err("refused").to_string();
            assert!(refused.contains(address), "names the address: {refused}");
            assert!(refused.contains("--api-keys-file") && refused.contains("--tls-client-ca"), "{refused}");
            assert!(open(&["--listen", address, "--allow-unauthenticated"]).is_ok());
            assert!(open(&["--listen", address, "--allow-unauthenticated", "true"]).is_ok());
            assert!(open(&["--listen", address, "--allow-unauthenticated", "false"]).is_err());
            assert!(open(&["--listen", address, "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"]).is_ok());
        }
    }

    #[test]
    fn a_database_url_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://u:hunter2@db/sessiond\n").unwrap();
        let mut settings =
            Settings::try_parse_from(["sessiond", "--database-url-file", path.to_str().unwrap()]).unwrap();
        settings.read_secret_files().unwrap();
        assert_eq!(settings.postgres().unwrap().url.expose(), "postgres://u:hunter2@db/sessiond");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_database_url_file_with_a_url_is_refused() {
        let refused = Settings::try_parse_from([
            "sessiond",
            "--database-url",
            "postgres://u:hunter2@db/x",
            "--database-url-file",
            "/run/secrets/url",
        ])
        .expect_err("both forms at once");
        let text = refused.to_string();
        assert!(text.contains("--database-url-file"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_unreadable_or_empty_database_url_file_names_the_file_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let mut settings =
            Settings::try_parse_from(["sessiond", "--database-url-file", missing.to_str().unwrap()]).unwrap();
        let err = format!("{:#}", settings.read_secret_files().expect_err("missing"));
        assert!(err.contains(missing.to_str().unwrap()), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        settings.store.database_url_file = Some(empty.clone());
        let err = format!("{:#}", settings.read_secret_files().expect_err("empty"));
        assert!(err.contains("empty"), "{err}");
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, b's', b'3', b'c']).unwrap();
        settings.store.database_url_file = Some(binary);
        let err = format!("{:#}", settings.read_secret_files().expect_err("not text"));
        assert!(!err.contains("s3c"), "{err}");
    }

    #[test]
    fn an_unknown_sessiond_variable_is_refused_with_the_closest_name() {
        let check = |names: &[&str]| check_environment(names.iter().map(|name| name.to_string()));
        check(&["SESSIOND_API_KEYS_FILE", "SESSIOND_DATABASE_URL_FILE", "PATH", "SESSIOND_TEST_STORE", "SESSIOND_BIN"])
            .expect("settings and reserved names pass");
        let err = check(&["SESSIOND_API_KEY_FILE"]).expect_err("a typo").to_string();
        assert!(err.contains("SESSIOND_API_KEY_FILE") && err.contains("did you mean SESSIOND_API_KEYS_FILE"), "{err}");
        let err = check(&["SESSIOND_NOTHING_LIKE_IT_AT_ALL"]).expect_err("unknown").to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert!(setting_variables().contains(&"SESSIOND_LISTEN".to_owned()));
    }

    #[test]
    fn the_database_url_prints_redacted_and_reaches_postgres_secret() {
        let url = "postgres://u:hunter2@db/sessiond";
        let settings = Settings::parse_from(["sessiond", "--database-url", url]);
        let printed = format!("{settings:?}");
        assert!(printed.contains("database_url: Some(<secret>)"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let postgres = settings.postgres().expect("a database URL is set");
        assert!(!format!("{postgres:?}").contains("hunter2"));
        assert_eq!(postgres.url.expose(), url);
    }

    #[test]
    fn postgres_settings_take_the_flags_defaults() {
        let defaults = Settings::parse_from(["sessiond"]);
        let postgres = Settings::default_postgres("postgres://db/sessiond");
        assert_eq!(postgres.pool_size, defaults.store.db_pool_size);
        assert_eq!(postgres.connect_timeout, defaults.store.db_connect_timeout);
        assert_eq!(postgres.statement_timeout, defaults.store.db_statement_timeout);
        assert_eq!(postgres.max_log_entries_per_session, defaults.session_logs.max_entries_per_session);
        assert_eq!(postgres.connect_timeout, Duration::from_secs(2), "the documented default");
        assert_eq!(postgres.statement_timeout, Duration::from_secs(10), "the documented default");
    }

    /// A value other than the default for each former session-log setting.
    const FORMER_VALUES: [&str; 11] =
        ["/etc/policy.yaml", "debug", "true", "false", "5s", "false", "warning", "none", "10", "2048", "7"];

    #[test]
    fn every_former_session_log_flag_and_variable_still_parses() {
        let none = |_: &str| None;
        let defaults = format!("{:?}", Settings::parse_with(["sessiond"], none).unwrap().session_logs);
        for ((_, flag, variable), value) in FORMER_VARIABLES.iter().zip(FORMER_VALUES) {
            let expected = Settings::parse_with(["sessiond", &format!("--{flag}"), value], none).unwrap().session_logs;
            let expected = format!("{expected:?}");
            assert_ne!(expected, defaults, "--{flag} {value} is not the default");
            let former_flag = format!("--{}", flag.trim_start_matches("session-"));
            let by_flag = Settings::parse_with(["sessiond", &former_flag, value], none)
                .unwrap_or_else(|err| panic!("{former_flag}: {err}"))
                .session_logs;
            assert_eq!(format!("{by_flag:?}"), expected, "{former_flag}");
            let by_variable = Settings::parse_with(["sessiond"], |name| (name == *variable).then(|| value.into()))
                .unwrap_or_else(|err| panic!("{variable}: {err}"))
                .session_logs;
            assert_eq!(format!("{by_variable:?}"), expected, "{variable}");
            let subcommand =
                Settings::parse_with(["sessiond", "migrate"], |name| (name == *variable).then(|| value.into()))
                    .unwrap_or_else(|err| panic!("{variable} with a subcommand: {err}"));
            assert_eq!(format!("{:?}", subcommand.session_logs), expected, "{variable} with a subcommand");
            let flag_wins = Settings::parse_with(["sessiond", &format!("--{flag}"), value], |name| {
                (name == *variable).then(|| "not a value".into())
            })
            .expect("a flag wins over a former variable");
            assert_eq!(format!("{:?}", flag_wins.session_logs), expected);
            check_environment([variable.to_string()]).expect("a former variable is a setting's");
        }
    }

    #[test]
    fn a_bad_value_in_a_former_variable_is_refused() {
        let refused =
            Settings::parse_with(["sessiond"], |name| (name == "SESSIOND_LOG_MIN_LEVEL").then(|| "loud".into()))
                .expect_err("not a level");
        assert!(refused.to_string().contains("loud"), "{refused}");
    }

    /// Every flag and its variable as they were named before the settings
    /// were grouped, `--flag=VARIABLE`.
    const NAMES_BEFORE_GROUPING: &str = "\
        --listen=SESSIOND_LISTEN --allow-unauthenticated=SESSIOND_ALLOW_UNAUTHENTICATED \
        --data-dir=SESSIOND_DATA_DIR --database-url=SESSIOND_DATABASE_URL \
        --database-url-file=SESSIOND_DATABASE_URL_FILE --db-pool-size=SESSIOND_DB_POOL_SIZE \
        --db-connect-timeout=SESSIOND_DB_CONNECT_TIMEOUT \
        --db-statement-timeout=SESSIOND_DB_STATEMENT_TIMEOUT --drain-timeout=SESSIOND_DRAIN_TIMEOUT \
        --roles-file=SESSIOND_ROLES_FILE --api-keys-file=SESSIOND_API_KEYS_FILE --tls-cert=SESSIOND_TLS_CERT \
        --tls-key=SESSIOND_TLS_KEY --tls-client-ca=SESSIOND_TLS_CLIENT_CA \
        --reload-interval=SESSIOND_RELOAD_INTERVAL --log-policy-file=SESSIOND_LOG_POLICY_FILE \
        --log-min-level=SESSIOND_LOG_MIN_LEVEL --log-keep-all=SESSIOND_LOG_KEEP_ALL \
        --log-keep-slow=SESSIOND_LOG_KEEP_SLOW --log-slow-threshold=SESSIOND_LOG_SLOW_THRESHOLD \
        --log-keep-failed=SESSIOND_LOG_KEEP_FAILED --log-keep-level=SESSIOND_LOG_KEEP_LEVEL \
        --log-continuous-kinds=SESSIOND_LOG_CONTINUOUS_KINDS --kind-timeouts=SESSIOND_KIND_TIMEOUTS \
        --cache-capacity=SESSIOND_CACHE_CAPACITY --sweep-interval=SESSIOND_SWEEP_INTERVAL \
        --activity-flush=SESSIOND_ACTIVITY_FLUSH --retention=SESSIOND_RETENTION \
        --event-retention=SESSIOND_EVENT_RETENTION --idempotency-window=SESSIOND_IDEMPOTENCY_WINDOW \
        --message-max-bytes=SESSIOND_MESSAGE_MAX_BYTES --message-max-channels=SESSIOND_MESSAGE_MAX_CHANNELS \
        --message-max-subscribers=SESSIOND_MESSAGE_MAX_SUBSCRIBERS \
        --message-subscriber-buffer=SESSIOND_MESSAGE_SUBSCRIBER_BUFFER \
        --message-post-rate=SESSIOND_MESSAGE_POST_RATE \
        --message-replay-window=SESSIOND_MESSAGE_REPLAY_WINDOW \
        --max-call-duration=SESSIOND_MAX_CALL_DURATION --max-concurrent-calls=SESSIOND_MAX_CONCURRENT_CALLS \
        --max-concurrent-calls-per-key=SESSIOND_MAX_CONCURRENT_CALLS_PER_KEY \
        --max-concurrent-calls-per-tenant=SESSIOND_MAX_CONCURRENT_CALLS_PER_TENANT \
        --max-streams-per-key=SESSIOND_MAX_STREAMS_PER_KEY --rate-limit-per-key=SESSIOND_RATE_LIMIT_PER_KEY \
        --rate-limit-per-tenant=SESSIOND_RATE_LIMIT_PER_TENANT \
        --handshake-timeout=SESSIOND_HANDSHAKE_TIMEOUT \
        --max-concurrent-streams=SESSIOND_MAX_CONCURRENT_STREAMS \
        --keepalive-interval=SESSIOND_KEEPALIVE_INTERVAL --keepalive-timeout=SESSIOND_KEEPALIVE_TIMEOUT \
        --max-connection-age=SESSIOND_MAX_CONNECTION_AGE \
        --max-connection-age-grace=SESSIOND_MAX_CONNECTION_AGE_GRACE \
        --max-request-bytes=SESSIOND_MAX_REQUEST_BYTES --cors-allowed-origins=SESSIOND_CORS_ALLOWED_ORIGINS \
        --max-text-bytes=SESSIOND_MAX_TEXT_BYTES --storage-max-key-bytes=SESSIOND_STORAGE_MAX_KEY_BYTES \
        --storage-max-value-bytes=SESSIOND_STORAGE_MAX_VALUE_BYTES \
        --storage-max-keys=SESSIOND_STORAGE_MAX_KEYS --storage-max-bytes=SESSIOND_STORAGE_MAX_BYTES \
        --log-max-entries=SESSIOND_LOG_MAX_ENTRIES --log-max-message-bytes=SESSIOND_LOG_MAX_MESSAGE_BYTES \
        --max-promotion=SESSIOND_MAX_PROMOTION \
        --max-promotions-per-session=SESSIOND_MAX_PROMOTIONS_PER_SESSION \
        --log-max-entries-per-session=SESSIOND_LOG_MAX_ENTRIES_PER_SESSION \
        --max-open-sessions-per-tenant=SESSIOND_MAX_OPEN_SESSIONS_PER_TENANT \
        --max-log-entries-per-tenant=SESSIOND_MAX_LOG_ENTRIES_PER_TENANT \
        --max-page-size=SESSIOND_MAX_PAGE_SIZE --log-format=SESSIOND_LOG_FORMAT --log-filter=SESSIOND_LOG \
        --log-repeat-interval=SESSIOND_LOG_REPEAT_INTERVAL --otlp-endpoint=SESSIOND_OTLP_ENDPOINT \
        --otlp-service-name=SESSIOND_OTLP_SERVICE_NAME --metrics-listen=SESSIOND_METRICS_LISTEN \
        --console-listen=SESSIOND_CONSOLE_LISTEN";

    #[test]
    fn every_flag_and_variable_named_before_the_grouping_is_still_accepted() {
        let command = <Settings as clap::CommandFactory>::command();
        let variables = setting_variables();
        for pair in NAMES_BEFORE_GROUPING.split_whitespace() {
            let (flag, variable) = pair.split_once('=').expect("--flag=VARIABLE");
            let flag = flag.trim_start_matches("--");
            let known = command.get_arguments().any(|arg| {
                arg.get_long() == Some(flag) || arg.get_all_aliases().is_some_and(|aliases| aliases.contains(&flag))
            });
            assert!(known, "--{flag} is accepted");
            assert!(variables.iter().any(|name| name == variable), "{variable} is a setting's");
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        let settings = Settings::parse_from(["sessiond"]);
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:50051");
        settings.service_config().expect("defaults are valid");
    }
}
