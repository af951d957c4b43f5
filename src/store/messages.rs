//! The replay window of channel messages: global messages, numbered per
//! channel and kept for a while, and how a store shared by several
//! processes announces the messages each posts to the others.
//!
//! Contract shared by the implementations:
//! - a channel's messages are numbered from 1, one more per message, in
//!   commit order (a reader that sees message N of a channel sees every
//!   message of it before N); numbering never restarts, not even after a
//!   purge removed every message of the channel;
//! - [`MessageLog::append`] answers after the message is committed, and a
//!   shared store announces it to every process (this one included) only
//!   once committed.

use std::fmt;

use async_trait::async_trait;

use super::StoreResult;
use crate::clock::UnixMillis;
use crate::domain::{Message, NewMessage, TenantChannel};

/// A channel's numbering as the store keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelBounds {
    /// The sequence of the channel's last message (0: none yet).
    pub latest: u64,
    /// The sequence of its oldest kept message; `latest + 1` when none is
    /// kept.
    pub oldest: u64,
}

/// A message posted through another process, as the store learns of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Announced {
    /// The message itself (small enough to travel in the announcement).
    Message(Message),
    /// A message to read from the store (too large to travel).
    Posted { to: TenantChannel, sequence: u64 },
    /// Announcements may have been missed (the listening connection was
    /// lost and is back): followers read what they may have missed.
    Resync,
}

/// Where global messages are numbered and kept.
#[async_trait]
pub trait MessageLog: Send + Sync + fmt::Debug + 'static {
    /// Numbers a global message, keeps it and announces it; answers its
    /// sequence.
    async fn append(&self, message: &NewMessage) -> StoreResult<u64>;

    /// Kept messages of `channel` with a sequence above `after`, in order,
    /// at most `limit`.
    async fn messages_after(&self, channel: &TenantChannel, after: u64, limit: usize) -> StoreResult<Vec<Message>>;

    /// The channel's latest and oldest kept sequence.
    async fn bounds(&self, channel: &TenantChannel) -> StoreResult<ChannelBounds>;

    /// Deletes messages posted before `before`; answers how many.
    async fn purge_messages(&self, before: UnixMillis) -> StoreResult<u64>;

    /// Messages other processes post, as they are announced; `None` for a
    /// store only this process writes.
    fn announcements(&self) -> Option<tokio::sync::broadcast::Receiver<Announced>> {
        None
    }
}
