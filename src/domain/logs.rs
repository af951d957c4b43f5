//! Session logs: entries, and the policy that decides at close whether a
//! session's log is kept — the shape of Serverpod's `LogSettings`: a minimum
//! level, and keep all / slow (over a threshold) / failed sessions, set
//! server-wide with overrides per kind and endpoint.

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
}

/// A stored entry with what QueryLogs reports of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Store-assigned, increasing: the paging cursor.
    pub entry_id: i64,
    /// Entry number within its session's log, from 1.
    pub sequence: u64,
    pub log_id: Option<LogId>,
    pub session_id: SessionId,
    pub user_id: Option<String>,
    pub kind: SessionKind,
    pub entry: LogEntry,
}

/// Filters of QueryLogs. Only kept logs are ever answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Always set by the service: the caller's tenant.
    pub tenant: Option<TenantId>,
    pub session_id: Option<SessionId>,
    pub user_id: Option<String>,
    pub kind: Option<SessionKind>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub min_level: Option<LogLevel>,
    pub failed_only: bool,
    pub slow_only: bool,
    /// Answer entries with `entry_id` greater than this.
    pub after_entry: i64,
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
}

impl Default for LogPolicy {
    /// Serverpod's defaults: info and up, keep slow (over 1 s) and failed.
    fn default() -> Self {
        Self {
            min_level: LogLevel::Info,
            keep_all: false,
            keep_slow: true,
            slow_threshold: Duration::from_secs(1),
            keep_failed: true,
        }
    }
}

impl LogPolicy {
    pub fn is_slow(&self, duration: Duration) -> bool {
        duration >= self.slow_threshold
    }

    /// Whether a session's log is kept when it ends. Logs of sessions a
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
}

impl PolicyPatch {
    fn over(&self, base: LogPolicy) -> LogPolicy {
        LogPolicy {
            min_level: self.min_level.unwrap_or(base.min_level),
            keep_all: self.keep_all.unwrap_or(base.keep_all),
            keep_slow: self.keep_slow.unwrap_or(base.keep_slow),
            slow_threshold: self.slow_threshold_ms.map(Duration::from_millis).unwrap_or(base.slow_threshold),
            keep_failed: self.keep_failed.unwrap_or(base.keep_failed),
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
}

/// The server-wide policy and its overrides.
#[derive(Debug, Clone, Default)]
pub struct LogPolicies {
    default: LogPolicy,
    overrides: Vec<Override>,
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
        Self { default, overrides: Vec::new() }
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
                Ok(Override { kind, endpoint: o.endpoint, policy: o.patch.over(default) })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, overrides })
    }

    /// The most specific policy: kind and endpoint, then endpoint, then
    /// kind, then the default.
    pub fn for_session(&self, kind: SessionKind, endpoint: &str) -> LogPolicy {
        let matches =
            |o: &&Override| o.kind.is_none_or(|k| k == kind) && o.endpoint.as_deref().is_none_or(|e| e == endpoint);
        let specificity = |o: &Override| (o.endpoint.is_some() as u8) * 2 + o.kind.is_some() as u8;
        self.overrides.iter().filter(matches).max_by_key(|o| specificity(o)).map_or(self.default, |o| o.policy)
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
        assert_eq!(policies.for_session(SessionKind::Internal, "x"), LogPolicy::default());
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
