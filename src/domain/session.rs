//! A session record and the arithmetic of its expiry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;

use super::ids::{LogId, PromotionId, SessionId, TenantId, TokenHash};
use super::kind::{EndReason, SessionKind};

/// Descriptive labels. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub endpoint: String,
    pub method: String,
    pub future_call: String,
    pub client_address: String,
    pub user_agent: String,
}

/// A time-limited elevation granted by Promote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: PromotionId,
    /// Lower-case privilege name.
    pub privilege: String,
    pub expires_at: UnixMillis,
}

/// What a session was granted. Names are stored lower-case, as the role
/// book defines them; expansion through includes happens at check time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub privileges: Vec<String>,
    pub roles: Vec<String>,
    pub promotions: Vec<Promotion>,
}

impl Grants {
    /// Drops promotions that are over, so records do not grow forever.
    pub fn without_expired_promotions(mut self, now: UnixMillis) -> Self {
        self.promotions.retain(|p| p.expires_at > now);
        self
    }
}

/// How and when a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub reason: EndReason,
    pub at: UnixMillis,
    pub error: Option<String>,
    pub stack_trace: Option<String>,
    /// Set when the log policy kept the session's log.
    pub log_id: Option<LogId>,
    /// Whether the session ran longer than its policy's slow threshold.
    pub slow: bool,
}

/// A session as the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub token_hash: TokenHash,
    /// The tenant of the caller that created it; no other tenant sees it.
    pub tenant: TenantId,
    pub kind: SessionKind,
    pub user_id: Option<String>,
    pub labels: Labels,
    pub created_at: UnixMillis,
    /// Last activity written to the store. The service may know of later
    /// activity not yet written (see `service::activity`).
    pub last_active_at: UnixMillis,
    pub idle_timeout: Option<Duration>,
    pub lifetime: Option<Duration>,
    pub trusted: bool,
    pub grants: Grants,
    /// Bumped by every grants write; compare-and-set guards concurrent ones.
    pub grants_version: u64,
    pub end: Option<SessionEnd>,
}

/// Why an open session is due to end, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Open { expires_at: Option<UnixMillis> },
    Due(EndReason),
}

/// What a session's expiry is reckoned from: its start, its last written
/// activity and its two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub created_at: UnixMillis,
    /// Last activity written to the store (see [`Session::last_active_at`]).
    pub last_active_at: UnixMillis,
    pub idle_timeout: Option<Duration>,
    pub lifetime: Option<Duration>,
}

impl Timing {
    /// When the session ends if it sees no activity after `last_active_at`.
    pub fn expires_at(&self, last_active_at: UnixMillis) -> Option<UnixMillis> {
        let idle = self.idle_timeout.map(|idle| last_active_at + idle);
        let life = self.lifetime.map(|life| self.created_at + life);
        match (idle, life) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the session is due to end at `now`, given its latest known
    /// activity. The lifetime wins when both are due.
    pub fn expiry(&self, last_active_at: UnixMillis, now: UnixMillis) -> Expiry {
        if self.lifetime.is_some_and(|life| self.created_at + life <= now) {
            return Expiry::Due(EndReason::LifetimeReached);
        }
        if self.idle_timeout.is_some_and(|idle| last_active_at + idle <= now) {
            return Expiry::Due(EndReason::IdleTimeout);
        }
        Expiry::Open { expires_at: self.expires_at(last_active_at) }
    }
}

impl Session {
    pub fn is_open(&self) -> bool {
        self.end.is_none()
    }

    pub fn timing(&self) -> Timing {
        Timing {
            created_at: self.created_at,
            last_active_at: self.last_active_at,
            idle_timeout: self.idle_timeout,
            lifetime: self.lifetime,
        }
    }

    /// [`Timing::expires_at`] of this session.
    pub fn expires_at(&self, last_active_at: UnixMillis) -> Option<UnixMillis> {
        self.timing().expires_at(last_active_at)
    }

    /// [`Timing::expiry`] of this session.
    pub fn expiry(&self, last_active_at: UnixMillis, now: UnixMillis) -> Expiry {
        self.timing().expiry(last_active_at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(idle: Option<u64>, life: Option<u64>) -> Session {
        Session {
            id: SessionId::generate(),
            token_hash: TokenHash([0; 32]),
            tenant: TenantId::default(),
            kind: SessionKind::WebUser,
            user_id: None,
            labels: Labels::default(),
            created_at: UnixMillis(1_000),
            last_active_at: UnixMillis(1_000),
            idle_timeout: idle.map(Duration::from_millis),
            lifetime: life.map(Duration::from_millis),
            trusted: false,
            grants: Grants::default(),
            grants_version: 0,
            end: None,
        }
    }

    #[test]
    fn activity_slides_the_idle_timeout_but_not_the_lifetime() {
        let s = session(Some(100), Some(1_000));
        assert_eq!(
            s.expiry(UnixMillis(1_000), UnixMillis(1_099)),
            Expiry::Open { expires_at: Some(UnixMillis(1_100)) }
        );
        assert_eq!(s.expiry(UnixMillis(1_000), UnixMillis(1_100)), Expiry::Due(EndReason::IdleTimeout));
        assert_eq!(s.expiry(UnixMillis(1_950), UnixMillis(2_000)), Expiry::Due(EndReason::LifetimeReached));
    }

    #[test]
    fn a_session_without_timeouts_never_expires() {
        let s = session(None, None);
        assert_eq!(s.expiry(UnixMillis(0), UnixMillis(i64::MAX)), Expiry::Open { expires_at: None });
    }
}
