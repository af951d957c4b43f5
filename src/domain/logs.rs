//! Session logs: entries, and the policy that decides at close whether a
//! session's log is kept — the shape of Serverpod's `LogSettings`: a minimum
//! level, and keep all / slow (over a threshold) / failed sessions / those
//! with an entry at or above a level, set server-wide with overrides per
//! kind and endpoint — and whether its entries can be read while it is
//! open (continuous logging).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::UnixMillis;

use super::ids::{LogId, SessionId, TenantId};
use super::kind::{EndReason, SessionKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
    Fatal = 5,
}

impl LogLevel {
    pub fn from_number(n: i64) -> Option<Self> {
        [Self::Debug, Self::Info, Self::Warning, Self::Error, Self::Fatal].into_iter().find(|l| *l as i64 == n)
    }
}

/// A point in time to the microsecond: a client's time for its entry,
/// kept as given (Postgres' `timestamptz` holds no finer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMicros(pub i64);

/// One entry as a client logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
    pub exception: Option<String>,
    pub stack_trace: Option<String>,
    pub client_time: Option<UnixMicros>,
    /// When sessiond received it.
    pub logged_at: UnixMillis,
    /// Logged under continuous logging: readable (QueryLogs, FollowLogs)
    /// from the moment it is stored, not only once its session's log is
    /// kept at the end.
    pub continuous: bool,
}

/// A stored entry with what QueryLogs reports of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Store-assigned, unique, increasing in the order entries are stored.
    pub entry_id: i64,
    /// When the entry became readable, as the store orders it (see
    /// [`LogCursor`]).
    pub position: i64,
    /// Entry number within its session's log, from 1.
    pub sequence: u64,
    pub log_id: Option<LogId>,
    pub session_id: SessionId,
    pub user_id: Option<String>,
    pub kind: SessionKind,
    /// The endpoint its session serves; empty for none.
    pub endpoint: String,
    pub entry: LogEntry,
}

/// A place in the order entries become readable: by `position`, then by
/// `entry_id`. An entry becomes readable when it is stored under
/// continuous logging, else when its session's log is kept at the end;
/// `position` is the writing transaction's place in commit order
/// (Postgres: its transaction id; the embedded store: a counter), so a
/// reader that has seen everything below a store's horizon misses nothing
/// by resuming after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogCursor {
    pub position: i64,
    pub entry_id: i64,
}

impl LogCursor {
    /// The cursor after `record`.
    pub fn after(record: &LogRecord) -> Self {
        Self { position: record.position, entry_id: record.entry_id }
    }

    /// The cursor after every position below `horizon`.
    pub fn below(horizon: i64) -> Self {
        Self { position: horizon.saturating_sub(1), entry_id: i64::MAX }
    }

    /// Its text on the wire: opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.position, self.entry_id)
    }

    /// Reads what [`LogCursor::encode`] wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let (position, entry_id) = text.split_once('.')?;
        let parse = |n: &str| n.bytes().all(|b| b.is_ascii_digit()).then(|| n.parse::<i64>().ok()).flatten();
        Some(Self { position: parse(position)?, entry_id: parse(entry_id)? })
    }
}

/// A page of entries and how far the store is settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    /// Every entry with a lower position that will ever be readable is
    /// readable now; entries at or above it may still be committing.
    pub horizon: i64,
}

impl LogPage {
    /// Where to resume after this page of at most `limit` records asked
    /// after `after`: after its last record when it is full, else after
    /// everything below the horizon (nothing more below it matches).
    pub fn cursor(&self, after: LogCursor, limit: usize) -> LogCursor {
        match self.records.last() {
            Some(last) if self.records.len() >= limit => LogCursor::after(last),
            last => after.max(LogCursor::below(self.horizon)).max(last.map(LogCursor::after).unwrap_or_default()),
        }
    }
}

/// Filters of QueryLogs and FollowLogs: entries of kept logs, and of open
/// sessions logged continuously.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Always set by the service: the caller's tenant.
    pub tenant: Option<TenantId>,
    pub session_id: Option<SessionId>,
    pub user_id: Option<String>,
    pub kind: Option<SessionKind>,
    /// Only entries of sessions serving this endpoint (`labels.endpoint`).
    pub endpoint: Option<String>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub min_level: Option<LogLevel>,
    pub failed_only: bool,
    pub slow_only: bool,
    /// Answer entries after this place.
    pub after: LogCursor,
    pub limit: usize,
}

/// One policy, fully resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    pub min_level: LogLevel,
    pub keep_all: bool,
    pub keep_slow: bool,
    pub slow_threshold: Duration,
    pub keep_failed: bool,
    /// Keep the log of a session with an entry at or above this level.
    pub keep_level: Option<LogLevel>,
    /// Entries are readable while the session is open.
    pub continuous: bool,
}

impl Default for LogPolicy {
    /// Serverpod's defaults: info and up, keep slow (over 1 s) and failed;
    /// and sessions with an error.
    fn default() -> Self {
        Self {
            min_level: LogLevel::Info,
            keep_all: false,
            keep_slow: true,
            slow_threshold: Duration::from_secs(1),
            keep_failed: true,
            keep_level: Some(LogLevel::Error),
            continuous: false,
        }
    }
}

impl LogPolicy {
    pub fn is_slow(&self, duration: Duration) -> bool {
        duration >= self.slow_threshold
    }

    /// Whether a session's log is kept when it ends, before looking at its
    /// entries' levels ([`LogPolicy::keep_level`]). Logs of sessions a
    /// crash left open are always kept: they are what explains the crash.
    pub fn keeps(&self, reason: EndReason, duration: Duration) -> bool {
        self.keep_all
            || reason == EndReason::ServerCrashed
            || (self.keep_failed && reason == EndReason::Failed)
            || (self.keep_slow && self.is_slow(duration))
    }
}

/// Fields an override may change; the rest come from the default policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyPatch {
    min_level: Option<LogLevel>,
    keep_all: Option<bool>,
    keep_slow: Option<bool>,
    slow_threshold_ms: Option<u64>,
    keep_failed: Option<bool>,
    keep_level: Option<KeepLevel>,
    continuous: Option<bool>,
}

/// A keep level in a policy file: a level, or `none`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeepLevel {
    None,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl KeepLevel {
    fn level(self) -> Option<LogLevel> {
        match self {
            Self::None => None,
            Self::Debug => Some(LogLevel::Debug),
            Self::Info => Some(LogLevel::Info),
            Self::Warning => Some(LogLevel::Warning),
            Self::Error => Some(LogLevel::Error),
            Self::Fatal => Some(LogLevel::Fatal),
        }
    }
}

impl PolicyPatch {
    fn over(&self, base: LogPolicy) -> LogPolicy {
        LogPolicy {
            min_level: self.min_level.unwrap_or(base.min_level),
            keep_all: self.keep_all.unwrap_or(base.keep_all),
            keep_slow: self.keep_slow.unwrap_or(base.keep_slow),
            slow_threshold: self.slow_threshold_ms.map(Duration::from_millis).unwrap_or(base.slow_threshold),
            keep_failed: self.keep_failed.unwrap_or(base.keep_failed),
            keep_level: self.keep_level.map_or(base.keep_level, KeepLevel::level),
            continuous: base.continuous,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideDef {
    kind: Option<String>,
    endpoint: Option<String>,
    #[serde(flatten)]
    patch: PolicyPatch,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    default: PolicyPatch,
    #[serde(default)]
    overrides: Vec<OverrideDef>,
}

#[derive(Debug, Clone)]
struct Override {
    kind: Option<SessionKind>,
    endpoint: Option<String>,
    policy: LogPolicy,
    /// Set when the override says: else the file's default, else the kind.
    continuous: Option<bool>,
}

/// The kinds logged continuously unless a policy says otherwise: streams
/// and the kinds that outlive a request.
pub const CONTINUOUS_KINDS: [SessionKind; 8] = [
    SessionKind::MethodStream,
    SessionKind::Streaming,
    SessionKind::FutureCall,
    SessionKind::Internal,
    SessionKind::WebUser,
    SessionKind::RemoteUser,
    SessionKind::StoredProcedure,
    SessionKind::Standalone,
];

/// The server-wide policy and its overrides.
#[derive(Debug, Clone)]
pub struct LogPolicies {
    default: LogPolicy,
    overrides: Vec<Override>,
    /// The file's `default.continuous`, when it says.
    default_continuous: Option<bool>,
    continuous_kinds: Vec<SessionKind>,
}

impl Default for LogPolicies {
    fn default() -> Self {
        Self::new(LogPolicy::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogPolicyError {
    #[error("cannot read log policy file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("log policy file does not parse")]
    Parse(#[from] serde_yaml::Error),
    #[error("log policy file is invalid: {0}")]
    Invalid(String),
}

impl LogPolicies {
    pub fn new(default: LogPolicy) -> Self {
        Self { default, overrides: Vec::new(), default_continuous: None, continuous_kinds: CONTINUOUS_KINDS.to_vec() }
    }

    /// Sets the kinds logged continuously where no policy says (by default
    /// [`CONTINUOUS_KINDS`]).
    pub fn with_continuous_kinds(mut self, kinds: Vec<SessionKind>) -> Self {
        self.continuous_kinds = kinds;
        self
    }

    pub fn load(path: &Path, base: LogPolicy) -> Result<Self, LogPolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LogPolicyError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, base)
    }

    /// Parses a YAML (or JSON) policy file over `base` (the flags' policy):
    ///
    /// ```yaml
    /// default: { min_level: info, keep_slow: true, slow_threshold_ms: 1000 }
    /// overrides:
    ///   - { kind: web_call, endpoint: checkout, keep_all: true }
    /// ```
    pub fn parse(text: &str, base: LogPolicy) -> Result<Self, LogPolicyError> {
        let file: PolicyFile = serde_yaml::from_str(text)?;
        let default = file.default.over(base);
        let overrides = file
            .overrides
            .into_iter()
            .map(|o| {
                let kind = match o.kind.as_deref() {
                    None => None,
                    Some(name) => Some(
                        SessionKind::from_name(name)
                            .ok_or_else(|| LogPolicyError::Invalid(format!("unknown session kind {name:?}")))?,
                    ),
                };
                if kind.is_none() && o.endpoint.is_none() {
                    return Err(LogPolicyError::Invalid("an override needs a kind, an endpoint or both".into()));
                }
                Ok(Override {
                    kind,
                    endpoint: o.endpoint,
                    continuous: o.patch.continuous,
                    policy: o.patch.over(default),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, overrides, default_continuous: file.default.continuous, ..Self::new(base) })
    }

    /// The most specific policy: kind and endpoint, then endpoint, then
    /// kind, then the default.
    pub fn for_session(&self, kind: SessionKind, endpoint: &str) -> LogPolicy {
        let matches =
            |o: &&Override| o.kind.is_none_or(|k| k == kind) && o.endpoint.as_deref().is_none_or(|e| e == endpoint);
        let specificity = |o: &Override| (o.endpoint.is_some() as u8) * 2 + o.kind.is_some() as u8;
        let found = self.overrides.iter().filter(matches).max_by_key(|o| specificity(o));
        let continuous = found
            .and_then(|o| o.continuous)
            .or(self.default_continuous)
            .unwrap_or_else(|| self.continuous_kinds.contains(&kind));
        LogPolicy { continuous, ..found.map_or(self.default, |o| o.policy) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_override_wins() {
        let text = "
default: { keep_all: false }
overrides:
  - { kind: web_call, keep_all: true }
  - { kind: web_call, endpoint: health, keep_all: false, min_level: error }
  - { endpoint: checkout, keep_failed: false }
";
        let policies = LogPolicies::parse(text, LogPolicy::default()).expect("valid policy file");
        assert!(policies.for_session(SessionKind::WebCall, "orders").keep_all);
        let health = policies.for_session(SessionKind::WebCall, "health");
        assert!(!health.keep_all);
        assert_eq!(health.min_level, LogLevel::Error);
        assert!(!policies.for_session(SessionKind::MethodCall, "checkout").keep_failed);
        assert_eq!(policies.for_session(SessionKind::MethodCall, "x"), LogPolicy::default());
    }

    #[test]
    fn continuous_logging_follows_the_kind_unless_a_policy_says() {
        let text = "
overrides:
  - { kind: web_user, endpoint: quiet, continuous: false }
  - { kind: web_call, endpoint: live, continuous: true, keep_level: none }
";
        let policies = LogPolicies::parse(text, LogPolicy::default()).expect("valid policy file");
        assert!(policies.for_session(SessionKind::Streaming, "x").continuous);
        assert!(policies.for_session(SessionKind::WebUser, "x").continuous);
        assert!(!policies.for_session(SessionKind::WebUser, "quiet").continuous);
        assert!(!policies.for_session(SessionKind::WebCall, "x").continuous);
        let live = policies.for_session(SessionKind::WebCall, "live");
        assert!(live.continuous);
        assert_eq!(live.keep_level, None);
        assert_eq!(policies.for_session(SessionKind::WebCall, "x").keep_level, Some(LogLevel::Error));

        let none = LogPolicies::parse("default: { continuous: false }", LogPolicy::default()).expect("valid");
        assert!(!none.for_session(SessionKind::Streaming, "x").continuous);
        let kinds = LogPolicies::new(LogPolicy::default()).with_continuous_kinds(vec![SessionKind::WebCall]);
        assert!(kinds.for_session(SessionKind::WebCall, "x").continuous);
        assert!(!kinds.for_session(SessionKind::Streaming, "x").continuous);
    }

    #[test]
    fn cursors_read_back_what_they_wrote_and_nothing_else() {
        let cursor = LogCursor { position: 812_345, entry_id: 17 };
        assert_eq!(LogCursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "a.b", "1.-2", "-1.2", "1.2.3", " 1.2", "99999999999999999999.1"] {
            assert_eq!(LogCursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn slow_and_failed_sessions_are_kept_by_default() {
        let p = LogPolicy::default();
        assert!(p.keeps(EndReason::Failed, Duration::ZERO));
        assert!(p.keeps(EndReason::Closed, Duration::from_secs(2)));
        assert!(!p.keeps(EndReason::Closed, Duration::from_millis(10)));
        assert!(p.keeps(EndReason::ServerCrashed, Duration::ZERO));
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        assert!(LogPolicies::parse("overrides: [{ kind: nope }]", LogPolicy::default()).is_err());
    }
}
