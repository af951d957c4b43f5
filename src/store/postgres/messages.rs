//! Channel messages in Postgres: one statement numbers global messages
//! from their channels' counter rows, keeps them in `messages` and
//! notifies [`MESSAGES_CHANNEL`] in the same transaction, so every replica
//! learns of them once committed, in commit order.
//!
//! Posts made while a commit is under way wait for it and are committed
//! together in the next one, up to [`MAX_BATCH`]: one transaction, one WAL
//! flush and one wake-up of the listeners for all of them. Within it, each
//! channel's counter row is bumped once by the number of its posts, and
//! its posts take the sequences below the new value in the order they
//! were made, so numbering stays gapless and in commit order. Each post is
//! answered once that transaction is committed.
//!
//! A notification carries at most 8000 bytes. A message that fits travels
//! whole (`{"o", "t", "c", "s", "y", "p", "a"}`: origin, tenant, channel,
//! sequence, type name, payload as JSON text, posted at); a larger one is
//! announced by its key alone (`"y"` and `"p"` null) and read from
//! `messages` by each replica that has subscribers for it. Each message
//! is its own notification.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{MESSAGES_CHANNEL, PgStore, Reads, internal, rows, sql_int};
use crate::clock::UnixMillis;
use crate::domain::{Channel, Message, NewMessage, Scope, TenantChannel, TenantId};
use crate::store::StoreError;
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

/// Posts committed in one transaction at most.
const MAX_BATCH: usize = 256;

/// The message log of a Postgres store; shares its pool and listener.
#[derive(Clone)]
pub struct PgMessages {
    reads: Reads,
    announcements: broadcast::Sender<Announced>,
    origin: String,
    /// The queue of posts to commit, and the task committing them (started
    /// by the first post; it ends once every clone is dropped).
    appends: Arc<OnceLock<mpsc::Sender<Append>>>,
}

impl std::fmt::Debug for PgMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMessages").finish_non_exhaustive()
    }
}

impl PgStore {
    /// The message log kept in this store's database.
    pub fn messages(&self) -> PgMessages {
        PgMessages {
            reads: self.reads.clone(),
            announcements: self.announcements.clone(),
            origin: self.origin.clone(),
            appends: Arc::default(),
        }
    }
}

/// A post waiting for its commit, as the statement binds it.
struct Append {
    tenant: String,
    channel: String,
    type_name: String,
    payload: String,
    posted_at: i64,
    /// Whether the notification carries the message.
    inline: bool,
    answer: oneshot::Sender<StoreResult<u64>>,
}

/// Numbers, keeps and announces the posts `$1`…`$6` (one array element per
/// post, in the order they were made); answers each post's position
/// (from 1) and sequence.
const APPEND: &str = "\
WITH posted AS (
    SELECT t COLLATE \"C\" AS tenant, c COLLATE \"C\" AS channel, y, p, a, inline, n
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::bool[])
        WITH ORDINALITY AS posts(t, c, y, p, a, inline, n)
), counter AS (
    INSERT INTO message_channels AS m (tenant, channel, last_sequence)
    SELECT tenant, channel, count(*) FROM posted GROUP BY tenant, channel
    ON CONFLICT (tenant, channel) DO UPDATE SET last_sequence = m.last_sequence + EXCLUDED.last_sequence
    RETURNING tenant, channel, last_sequence
), numbered AS (
    SELECT posted.*, counter.last_sequence
        - count(*) OVER (PARTITION BY posted.tenant, posted.channel)
        + row_number() OVER (PARTITION BY posted.tenant, posted.channel ORDER BY posted.n) AS sequence
    FROM posted JOIN counter USING (tenant, channel)
), kept AS (
    INSERT INTO messages (tenant, channel, sequence, type_name, payload, posted_at)
    SELECT tenant, channel, sequence, y, p, a FROM numbered
)
SELECT n, sequence, pg_notify($7, json_build_object(
    'o', $8::text, 't', tenant, 'c', channel, 's', sequence,
    'y', CASE WHEN inline THEN y END, 'p', CASE WHEN inline THEN p END, 'a', a)::text)
FROM numbered ORDER BY n";

impl PgMessages {
    /// The queue of the task committing posts, started on first use.
    fn appends(&self) -> &mpsc::Sender<Append> {
        self.appends.get_or_init(|| {
            let (queue, posts) = mpsc::channel(MAX_BATCH * 4);
            tokio::spawn(commit_batches(self.reads.clone(), self.origin.clone(), posts));
            queue
        })
    }
}

/// Commits the queued posts, as many at a time as are waiting (up to
/// [`MAX_BATCH`]), one transaction after the other, until the queue is
/// dropped.
async fn commit_batches(reads: Reads, origin: String, mut posts: mpsc::Receiver<Append>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while posts.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A post whose call was given up is not committed.
        batch.retain(|post| !post.answer.is_closed());
        if !batch.is_empty() {
            let committed = commit(&reads, &origin, &batch).await;
            answer(batch.drain(..), committed);
        }
        batch.clear();
    }
}

/// Commits `batch` in one statement; answers the sequences in its order.
async fn commit(reads: &Reads, origin: &str, batch: &[Append]) -> StoreResult<Vec<u64>> {
    let column = |field: fn(&Append) -> &str| batch.iter().map(field).collect::<Vec<&str>>();
    let tenants = column(|post| &post.tenant);
    let channels = column(|post| &post.channel);
    let type_names = column(|post| &post.type_name);
    let payloads = column(|post| &post.payload);
    let posted_at: Vec<i64> = batch.iter().map(|post| post.posted_at).collect();
    let inline: Vec<bool> = batch.iter().map(|post| post.inline).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [&tenants, &channels, &type_names, &payloads, &posted_at, &inline, &MESSAGES_CHANNEL, &origin];
    let found = reads.query(APPEND, &params).await?;
    let mut sequences = vec![None; batch.len()];
    for row in &found {
        let position: i64 = row.try_get("n")?;
        let slot = usize::try_from(position).ok().and_then(|n| sequences.get_mut(n.wrapping_sub(1)));
        *slot.ok_or_else(|| internal("a message append answered a post it was not given"))? =
            Some(rows::unsigned(row, "sequence")?);
    }
    sequences.into_iter().map(|sequence| sequence.ok_or_else(|| internal("a message append left a post out"))).collect()
}

/// Answers each post of a batch: its sequence, or the batch's failure.
fn answer(batch: impl Iterator<Item = Append>, committed: StoreResult<Vec<u64>>) {
    match committed {
        Ok(sequences) => {
            for (post, sequence) in batch.zip(sequences) {
                let _ = post.answer.send(Ok(sequence));
            }
        }
        Err(err) => {
            let mut batch = batch;
            let first = batch.next();
            for post in batch {
                let _ = post.answer.send(Err(same_failure(&err)));
            }
            if let Some(post) = first {
                let _ = post.answer.send(Err(err));
            }
        }
    }
}

/// A failure like `err`, for another post of the same batch.
fn same_failure(err: &StoreError) -> StoreError {
    let cause = err.to_string().into();
    match err {
        StoreError::Unavailable(_) => StoreError::Unavailable(cause),
        StoreError::Full(_) => StoreError::Full(cause),
        _ => StoreError::Internal(cause),
    }
}

#[async_trait]
impl MessageLog for PgMessages {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn append(&self, message: &NewMessage) -> StoreResult<u64> {
        let payload = serde_json::to_string(&message.payload).map_err(|_| internal("cannot encode a message"))?;
        let channel = message.to.channel.to_string();
        let tenant = message.to.tenant.as_str().to_owned();
        let escaped = |text: &str| serde_json::to_string(text).map_or(usize::MAX / 4, |e| e.len());
        let notice = escaped(&payload) + escaped(&message.type_name) + tenant.len() + channel.len() + NOTICE_OVERHEAD;
        let (answer, answered) = oneshot::channel();
        let append = Append {
            tenant,
            channel,
            type_name: message.type_name.clone(),
            payload,
            posted_at: message.posted_at.0,
            inline: notice < MAX_INLINE_NOTICE,
            answer,
        };
        let gone = || internal("the message committer is gone");
        self.appends().send(append).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
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
