//! Messages between services: channels, their names, and the messages
//! posted to them. A channel always belongs to one tenant.

use std::fmt;

use crate::clock::UnixMillis;

use super::ids::{SessionId, TenantId};
use super::invalid::InvalidInput;

/// Longest channel name of a tenant's own, in bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 200;
/// Longest type name of a message, in bytes.
pub const MAX_TYPE_NAME_BYTES: usize = 200;

const SESSION_PREFIX: &str = "session:";
const USER_PREFIX: &str = "user:";

/// A channel name, parsed: what it follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// A channel of the tenant's own (`chat/room-42`).
    Named(String),
    /// One session's channel (`session:ID`).
    Session(SessionId),
    /// One user's channel (`user:ID`).
    User(String),
}

impl Channel {
    /// Parses a channel name; `field` names it in the error. A user id is
    /// at most `max_user_bytes`.
    pub fn parse(value: &str, field: &str, max_user_bytes: usize) -> Result<Self, InvalidInput> {
        if let Some(id) = value.strip_prefix(SESSION_PREFIX) {
            return SessionId::parse(id, field).map(Channel::Session);
        }
        if let Some(user) = value.strip_prefix(USER_PREFIX) {
            if user.is_empty() {
                return Err(InvalidInput::new(field, "a user channel names a user id: user:USER_ID"));
            }
            if let Some(violation) = InvalidInput::check_text(user, field, max_user_bytes) {
                return Err(violation);
            }
            return Ok(Channel::User(user.to_owned()));
        }
        if value.is_empty() {
            return Err(InvalidInput::new(field, "must name a channel"));
        }
        if value.contains(':') {
            return Err(InvalidInput::new(
                field,
                "unknown channel kind: a channel is NAME, session:SESSION_ID or user:USER_ID",
            ));
        }
        if value.len() > MAX_CHANNEL_NAME_BYTES {
            return Err(InvalidInput::new(field, format!("must be at most {MAX_CHANNEL_NAME_BYTES} bytes")));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
            return Err(InvalidInput::new(field, "may hold only letters, digits, '.', '_', '-' and '/'"));
        }
        Ok(Channel::Named(value.to_owned()))
    }

    /// Rebuilds a channel read back from a store, which holds only valid
    /// names.
    pub fn from_stored(value: &str) -> Self {
        Self::parse(value, "channel", usize::MAX / 2).unwrap_or_else(|_| Channel::Named(value.to_owned()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Named(name) => f.write_str(name),
            Channel::Session(id) => write!(f, "{SESSION_PREFIX}{id}"),
            Channel::User(user) => write!(f, "{USER_PREFIX}{user}"),
        }
    }
}

/// A channel of one tenant: what subscriptions and messages are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantChannel {
    pub tenant: TenantId,
    pub channel: Channel,
}

/// How far a message reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This process's subscribers only; not numbered, not kept.
    Local,
    /// Every process sharing the store; numbered per channel and kept for
    /// the replay window.
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// A message before it is numbered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub to: TenantChannel,
    pub payload: serde_json::Value,
    /// Empty when none was given.
    pub type_name: String,
    pub posted_at: UnixMillis,
}

/// A posted message. Global messages are numbered from 1 in their channel,
/// one more per message; local ones carry 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub sequence: u64,
    pub scope: Scope,
    pub message: NewMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_parse_into_their_kinds_and_print_back() {
        let id = SessionId::generate();
        for name in ["chat/room-42", &format!("session:{id}"), "user:alice@example.com"] {
            let channel = Channel::parse(name, "channel", 1024).expect("a valid name");
            assert_eq!(channel.to_string(), name);
        }
        assert_eq!(Channel::parse(&format!("session:{id}"), "c", 8), Ok(Channel::Session(id)));
        assert_eq!(Channel::parse("user:bob", "c", 8), Ok(Channel::User("bob".into())));
    }

    #[test]
    fn bad_channel_names_are_refused_with_their_field() {
        let long = "a".repeat(MAX_CHANNEL_NAME_BYTES + 1);
        for bad in ["", "team:x", "session:nope", "user:", "with space", "nul\0", long.as_str(), "user:toolongname"] {
            let refused = Channel::parse(bad, "channels[1].channel", 8).expect_err(bad);
            assert_eq!(refused.field, "channels[1].channel", "{bad:?}");
        }
    }
}
