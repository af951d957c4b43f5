//! Channel messages in the embedded store: the replay window of global
//! messages, on a connection of its own to the same database file (posts
//! commit on it one by one; SQLite's busy timeout orders them with the
//! session writer's batches). One process owns the file, so nothing is
//! announced: that process delivered every message itself.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::error::internal;
use super::{SqliteStore, schema};
use crate::clock::UnixMillis;
use crate::domain::{Message, NewMessage, Scope, TenantChannel};
use crate::store::messages::{ChannelBounds, MessageLog};
use crate::store::{StoreError, StoreResult};

/// The message log of an embedded store.
#[derive(Clone)]
pub struct SqliteMessages {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMessages").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The message log kept in this store's file, on a connection of its
    /// own.
    pub fn messages(&self) -> StoreResult<SqliteMessages> {
        SqliteMessages::open(&self.path)
    }
}

impl SqliteMessages {
    fn open(path: &Path) -> StoreResult<Self> {
        Ok(Self { conn: Arc::new(Mutex::new(schema::connect(path)?)) })
    }

    /// Runs `op` on the connection on a blocking thread.
    async fn with<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let run = tokio::task::spawn_blocking(move || op(&mut conn.lock().unwrap_or_else(PoisonError::into_inner)));
        match tokio::time::timeout(super::STALL_DEADLINE, run).await {
            Ok(done) => done.map_err(|e| StoreError::Internal(Box::new(e)))?,
            Err(_) => Err(super::stalled()),
        }
    }
}

fn sequence(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl MessageLog for SqliteMessages {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn append(&self, message: &NewMessage) -> StoreResult<u64> {
        let payload = serde_json::to_string(&message.payload).map_err(|_| internal("cannot encode a message"))?;
        let (tenant, channel) = (message.to.tenant.as_str().to_owned(), message.to.channel.to_string());
        let (type_name, posted_at) = (message.type_name.clone(), message.posted_at.0);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let last: i64 = tx.query_row(
                "INSERT INTO message_channels (tenant, channel, last_sequence) VALUES (?1, ?2, 1) \
                 ON CONFLICT (tenant, channel) DO UPDATE SET last_sequence = last_sequence + 1 \
                 RETURNING last_sequence",
                params![tenant, channel],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO messages (tenant, channel, sequence, type_name, payload, posted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![tenant, channel, last, type_name, payload, posted_at],
            )?;
            tx.commit()?;
            Ok(sequence(last))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn messages_after(&self, channel: &TenantChannel, after: u64, limit: usize) -> StoreResult<Vec<Message>> {
        let to = channel.clone();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT sequence, type_name, payload, posted_at FROM messages \
                 WHERE tenant = ?1 AND channel = ?2 AND sequence > ?3 ORDER BY sequence LIMIT ?4",
            )?;
            let rows =
                statement.query_map(params![to.tenant.as_str(), to.channel.to_string(), after, limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })?;
            let mut messages = Vec::new();
            for row in rows {
                let (number, type_name, payload, posted_at) = row?;
                messages.push(Message {
                    sequence: sequence(number),
                    scope: Scope::Global,
                    message: NewMessage {
                        to: to.clone(),
                        payload: serde_json::from_str(&payload).map_err(|_| internal("a kept message is not JSON"))?,
                        type_name,
                        posted_at: UnixMillis(posted_at),
                    },
                });
            }
            Ok(messages)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn bounds(&self, channel: &TenantChannel) -> StoreResult<ChannelBounds> {
        let (tenant, name) = (channel.tenant.as_str().to_owned(), channel.channel.to_string());
        self.with(move |conn| {
            let found: Option<(i64, Option<i64>)> = conn
                .query_row(
                    "SELECT c.last_sequence, (SELECT min(m.sequence) FROM messages m \
                     WHERE m.tenant = c.tenant AND m.channel = c.channel) \
                     FROM message_channels c WHERE c.tenant = ?1 AND c.channel = ?2",
                    params![tenant, name],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            Ok(match found {
                None => ChannelBounds { latest: 0, oldest: 1 },
                Some((latest, oldest)) => {
                    let latest = sequence(latest);
                    ChannelBounds { latest, oldest: oldest.map_or(latest + 1, sequence) }
                }
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_messages(&self, before: UnixMillis) -> StoreResult<u64> {
        self.with(move |conn| {
            let deleted = conn.execute("DELETE FROM messages WHERE posted_at < ?1", params![before.0])?;
            Ok(u64::try_from(deleted).unwrap_or(0))
        })
        .await
    }
}
