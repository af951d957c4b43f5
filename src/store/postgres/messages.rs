//! Channel messages in Postgres: one statement numbers a global message
//! from its channel's counter row, keeps it in `messages` and notifies
//! [`MESSAGES_CHANNEL`] in the same transaction, so every replica learns of
//! it once it is committed, in commit order.
//!
//! A notification carries at most 8000 bytes. A message that fits travels
//! whole (`{"o", "t", "c", "s", "y", "p", "a"}`: origin, tenant, channel,
//! sequence, type name, payload as JSON text, posted at); a larger one is
//! announced by its key alone (`"y"` and `"p"` null) and read from
//! `messages` by each replica that has subscribers for it.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{MESSAGES_CHANNEL, PgStore, Reads, internal, rows, sql_int};
use crate::clock::UnixMillis;
use crate::domain::{Channel, Message, NewMessage, Scope, TenantChannel, TenantId};
use crate::store::StoreResult;
use crate::store::messages::{Announced, ChannelBounds, MessageLog};

/// Announcements a follower may fall behind by before it must re-read.
pub(super) const ANNOUNCED_BACKLOG: usize = 16_384;

/// Notification payloads up to this size carry the message itself
/// (Postgres refuses payloads of 8000 bytes or more).
const MAX_INLINE_NOTICE: usize = 7_800;

/// Bytes a notification adds around the escaped type name and payload:
/// the keys, the origin, the numbers.
const NOTICE_OVERHEAD: usize = 128;

/// The message log of a Postgres store; shares its pool and listener.
#[derive(Clone)]
pub struct PgMessages {
    reads: Reads,
    announcements: broadcast::Sender<Announced>,
    origin: String,
}

impl std::fmt::Debug for PgMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMessages").finish_non_exhaustive()
    }
}

impl PgStore {
    /// The message log kept in this store's database.
    pub fn messages(&self) -> PgMessages {
        PgMessages { reads: self.reads.clone(), announcements: self.announcements.clone(), origin: self.origin.clone() }
    }
}

const APPEND: &str = "\
WITH counter AS (
    INSERT INTO message_channels AS c (tenant, channel, last_sequence) VALUES ($1, $2, 1)
    ON CONFLICT (tenant, channel) DO UPDATE SET last_sequence = c.last_sequence + 1
    RETURNING last_sequence
), kept AS (
    INSERT INTO messages (tenant, channel, sequence, type_name, payload, posted_at)
    SELECT $1, $2, last_sequence, $3, $4, $5 FROM counter
    RETURNING sequence
)
SELECT sequence, pg_notify($6, json_build_object(
    'o', $7::text, 't', $1::text, 'c', $2::text, 's', sequence,
    'y', CASE WHEN $8 THEN $3::text END, 'p', CASE WHEN $8 THEN $4::text END, 'a', $5::bigint)::text)
FROM kept";

#[async_trait]
impl MessageLog for PgMessages {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn append(&self, message: &NewMessage) -> StoreResult<u64> {
        let payload = serde_json::to_string(&message.payload).map_err(|_| internal("cannot encode a message"))?;
        let channel = message.to.channel.to_string();
        let tenant = message.to.tenant.as_str();
        let escaped = |text: &str| serde_json::to_string(text).map_or(usize::MAX / 4, |e| e.len());
        let notice = escaped(&payload) + escaped(&message.type_name) + tenant.len() + channel.len() + NOTICE_OVERHEAD;
        let inline = notice < MAX_INLINE_NOTICE;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &tenant,
            &channel,
            &message.type_name,
            &payload,
            &message.posted_at.0,
            &MESSAGES_CHANNEL,
            &self.origin,
            &inline,
        ];
        let rows = self.reads.query(APPEND, &params).await?;
        let row = rows.first().ok_or_else(|| internal("a message append answered no row"))?;
        rows::unsigned(row, "sequence")
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn messages_after(&self, channel: &TenantChannel, after: u64, limit: usize) -> StoreResult<Vec<Message>> {
        let sql = "SELECT sequence, type_name, payload, posted_at FROM messages \
                   WHERE tenant = $1 AND channel = $2 AND sequence > $3 ORDER BY sequence LIMIT $4";
        let name = channel.channel.to_string();
        let rows = self.reads.query(sql, &[&channel.tenant.as_str(), &name, &sql_int(after), &sql_int(limit)]).await?;
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get("payload")?;
                Ok(Message {
                    sequence: rows::unsigned(row, "sequence")?,
                    scope: Scope::Global,
                    message: NewMessage {
                        to: channel.clone(),
                        payload: serde_json::from_str(&payload).map_err(|_| internal("a kept message is not JSON"))?,
                        type_name: row.try_get("type_name")?,
                        posted_at: UnixMillis(row.try_get("posted_at")?),
                    },
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn bounds(&self, channel: &TenantChannel) -> StoreResult<ChannelBounds> {
        let sql = "SELECT c.last_sequence, (SELECT min(m.sequence) FROM messages m \
                   WHERE m.tenant = c.tenant AND m.channel = c.channel) AS oldest \
                   FROM message_channels c WHERE c.tenant = $1 AND c.channel = $2";
        let name = channel.channel.to_string();
        let rows = self.reads.query(sql, &[&channel.tenant.as_str(), &name]).await?;
        let Some(row) = rows.first() else { return Ok(ChannelBounds { latest: 0, oldest: 1 }) };
        let latest = rows::unsigned(row, "last_sequence")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(ChannelBounds { latest, oldest: oldest.map_or(latest + 1, |o| u64::try_from(o).unwrap_or(0)) })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_messages(&self, before: UnixMillis) -> StoreResult<u64> {
        let rows = self
            .reads
            .query(
                "WITH gone AS (DELETE FROM messages WHERE posted_at < $1 RETURNING 1) SELECT count(*) FROM gone",
                &[&before.0],
            )
            .await?;
        let count: i64 = rows.first().map(|row| row.try_get(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn announcements(&self) -> Option<broadcast::Receiver<Announced>> {
        Some(self.announcements.subscribe())
    }
}

/// The notice a notification carries.
#[derive(serde::Deserialize)]
struct Notice {
    o: String,
    t: String,
    c: String,
    s: u64,
    y: Option<String>,
    p: Option<String>,
    a: i64,
}

/// What a [`MESSAGES_CHANNEL`] notification announces, unless it is this
/// process's own (`origin`) or not understood.
pub(super) fn parse_announcement(payload: &str, origin: &str) -> Option<Announced> {
    let notice: Notice = serde_json::from_str(payload).ok()?;
    if notice.o == origin {
        return None;
    }
    let to = TenantChannel { tenant: TenantId::from_stored(notice.t), channel: Channel::from_stored(&notice.c) };
    match (notice.y, notice.p) {
        (Some(type_name), Some(payload)) => Some(Announced::Message(Message {
            sequence: notice.s,
            scope: Scope::Global,
            message: NewMessage {
                to,
                payload: serde_json::from_str(&payload).ok()?,
                type_name,
                posted_at: UnixMillis(notice.a),
            },
        })),
        _ => Some(Announced::Posted { to, sequence: notice.s }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_the_message_or_its_key_and_own_ones_are_skipped() {
        let whole = r#"{"o":"a","t":"acme","c":"chat","s":7,"y":"t.M","p":"{\"x\":1}","a":5}"#;
        let Some(Announced::Message(message)) = parse_announcement(whole, "b") else { panic!("a whole message") };
        assert_eq!((message.sequence, message.message.payload["x"].as_i64()), (7, Some(1)));
        assert_eq!(parse_announcement(whole, "a"), None, "its own");
        let keyed = r#"{"o":"a","t":"acme","c":"chat","s":8,"y":null,"p":null,"a":5}"#;
        assert!(matches!(parse_announcement(keyed, "b"), Some(Announced::Posted { sequence: 8, .. })));
    }
}
