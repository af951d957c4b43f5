//! Group commit: the writer tasks of the Postgres store, which commit its
//! writes (see `writes`) in batches.
//!
//! A write is sent to one of a few writer tasks; all writes of one session
//! go to the same writer, so a store's own writers never wait on each
//! other's row locks, and one session's writes commit in the order queued.
//! A writer takes every write waiting (up to [`MAX_BATCH`]) and runs them
//! in one transaction:
//!
//! 1. each write inside the savepoint `write`: one that fails (an unknown or
//!    ended session, a version conflict, a refused statement) is rolled back
//!    to it alone and answered its error;
//! 2. the events of the writes that succeeded are numbered last, by bumping
//!    `event_counter` once for the whole batch, and inserted;
//! 3. the notifications for other replicas are sent, then `COMMIT`.
//!
//! Callers are answered after the `COMMIT`. When the batch itself fails
//! (the connection is lost, the commit is refused) every write in it is
//! answered that failure.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::writes::{Applied, Changed, Outcome, Write};
use super::{EVENTS_CHANNEL, INVALIDATE_CHANNEL, internal, pool_error, sql_int};
use crate::domain::{EndReason, Event, NewEvent};
use crate::store::{Purged, StoreError, StoreResult};

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;
/// Writes that may wait for one writer before callers wait to queue more.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// A write's answer once its batch committed.
#[derive(Debug)]
pub(super) struct Committed {
    pub event: Option<Event>,
    pub outcome: Outcome,
}

impl Committed {
    /// The event of a write that records one.
    pub fn event(self) -> StoreResult<Event> {
        self.event.ok_or_else(|| internal("a write that records an event recorded none"))
    }

    /// The new version and the event of a compare-and-set.
    pub fn versioned(self) -> StoreResult<(u64, Event)> {
        match self {
            Committed { event: Some(event), outcome: Outcome::Version(version) } => Ok((version, event)),
            _ => Err(internal("a compare-and-set answered no version")),
        }
    }

    pub fn purged(self) -> StoreResult<Purged> {
        match self.outcome {
            Outcome::Purged(purged) => Ok(purged),
            _ => Err(internal("a purge answered no counts")),
        }
    }
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<StoreResult<Committed>>,
}

/// The queues of the writer tasks. The tasks stop once these are dropped
/// and what is queued is committed.
pub(super) struct Writers {
    queues: Vec<mpsc::Sender<Queued>>,
}

impl Writers {
    /// Starts `count` writer tasks taking connections from `pool`.
    pub fn start(pool: &Pool, count: usize) -> Writers {
        let queues = (0..count.max(1))
            .map(|_| {
                let (queue, writes) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(run_writer(pool.clone(), writes));
                queue
            })
            .collect();
        Writers { queues }
    }

    /// Queues `write` for its writer and waits until its batch committed.
    pub async fn submit(&self, write: Write) -> StoreResult<Committed> {
        let queue = &self.queues[write.writer(self.queues.len())];
        let (reply, answer) = oneshot::channel();
        queue.send(Queued { write, reply }).await.map_err(|_| internal("the postgres writer has stopped"))?;
        answer.await.map_err(|_| internal("the postgres writer has stopped"))?
    }
}

/// A writer task: commits queued writes in batches until the queue closes.
async fn run_writer(pool: Pool, mut writes: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while writes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match commit(&pool, &batch).await {
            Ok(results) => {
                tracing::trace!(writes = batch.len(), "committed a postgres write batch");
                for (queued, result) in batch.drain(..).zip(results) {
                    // The caller may have stopped waiting; then no one needs the answer.
                    let _ = queued.reply.send(result);
                }
            }
            Err(failure) => {
                tracing::error!(error = %failure, writes = batch.len(), "a postgres write batch did not commit");
                for queued in batch.drain(..) {
                    let _ = queued.reply.send(Err(failure.for_each_write()));
                }
            }
        }
    }
}

/// Why a whole batch failed, told to each of its writes.
#[derive(Debug, thiserror::Error)]
#[error("the write batch did not commit: {message}")]
struct BatchFailed {
    message: String,
    transient: bool,
}

impl BatchFailed {
    fn for_each_write(&self) -> StoreError {
        let cause = Box::new(BatchFailed { message: self.message.clone(), transient: self.transient });
        if self.transient { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
    }
}

impl From<StoreError> for BatchFailed {
    fn from(e: StoreError) -> Self {
        let message = match &e {
            StoreError::Unavailable(cause) | StoreError::Internal(cause) => cause.to_string(),
            other => other.to_string(),
        };
        BatchFailed { message, transient: matches!(e, StoreError::Unavailable(_)) }
    }
}

impl From<tokio_postgres::Error> for BatchFailed {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// Runs a batch in one transaction and commits it; answers each write's
/// own result.
async fn commit(pool: &Pool, batch: &[Queued]) -> Result<Vec<StoreResult<Committed>>, BatchFailed> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    let mut applied = Vec::with_capacity(batch.len());
    tx.batch_execute("SAVEPOINT write").await?;
    for (i, queued) in batch.iter().enumerate() {
        // After a success, move the savepoint past it; after a failure the
        // rollback left it where the next write starts.
        if i > 0 && applied.last().is_some_and(|a: &StoreResult<Applied>| a.is_ok()) {
            tx.batch_execute("RELEASE SAVEPOINT write; SAVEPOINT write").await?;
        }
        let result = queued.write.apply(&tx).await;
        if result.is_err() {
            tx.batch_execute("ROLLBACK TO SAVEPOINT write").await?;
        }
        applied.push(result);
    }
    let sequences = record_events(&tx, &applied).await?;
    notify(&tx, &applied, sequences.last().copied()).await?;
    tx.commit().await?;

    let mut sequences = sequences.into_iter();
    let results = applied
        .into_iter()
        .map(|result| {
            let Applied { event, outcome, .. } = result?;
            let event = match event {
                None => None,
                Some(event) => {
                    let sequence = sequences.next().ok_or_else(|| internal("an event went unnumbered"))?;
                    Some(Event { sequence: sequence as u64, event })
                }
            };
            Ok(Committed { event, outcome })
        })
        .collect();
    Ok(results)
}

/// Numbers and inserts the events of the writes that succeeded, in batch
/// order; answers their sequence numbers. The counter's row lock is taken
/// here, as late as possible, and held until the batch commits.
async fn record_events(tx: &Transaction<'_>, applied: &[StoreResult<Applied>]) -> StoreResult<Vec<i64>> {
    let events: Vec<&NewEvent> = applied.iter().filter_map(|a| a.as_ref().ok()?.event.as_ref()).collect();
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = sql_int(events.len());
    let bump = tx
        .prepare_cached("UPDATE event_counter SET last_sequence = last_sequence + $1 RETURNING last_sequence")
        .await?;
    let last: i64 = tx.query_one(&bump, &[&count]).await?.try_get(0)?;
    let sequences: Vec<i64> = (last - count + 1..=last).collect();

    let insert = tx
        .prepare_cached(
            "INSERT INTO events (sequence, event_type, session_id, tenant, user_id, kind, end_reason, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    let rows: Vec<_> = events
        .iter()
        .zip(&sequences)
        .map(|(e, sequence)| {
            (
                *sequence,
                e.event_type.as_str(),
                e.session_id.as_str(),
                e.tenant.as_str(),
                e.user_id.as_deref(),
                e.kind.as_str(),
                e.end_reason.map(EndReason::as_str),
                e.at.0,
            )
        })
        .collect();
    pipelined(rows.iter().map(|(sequence, event_type, session_id, tenant, user_id, kind, end_reason, at)| {
        let params: [&(dyn ToSql + Sync); 8] =
            [sequence, event_type, session_id, tenant, user_id, kind, end_reason, at];
        tx.execute_raw(&insert, params)
    }))
    .await?;
    Ok(sequences)
}

/// Tells other replicas what this batch changed, delivered at its commit:
/// the last event recorded, and each session record changed.
async fn notify(tx: &Transaction<'_>, applied: &[StoreResult<Applied>], last_event: Option<i64>) -> StoreResult<()> {
    let mut changed = BTreeSet::new();
    for applied in applied.iter().flatten() {
        match &applied.changed {
            Changed::Nothing => {}
            Changed::Session(id) => {
                changed.insert(id.as_str());
            }
            Changed::Every => {
                changed.insert("*");
            }
        }
    }
    let last_event = last_event.map(|sequence| sequence.to_string());
    let notifications: Vec<(&str, &str)> = last_event
        .iter()
        .map(|sequence| (EVENTS_CHANNEL, sequence.as_str()))
        .chain(changed.into_iter().map(|id| (INVALIDATE_CHANNEL, id)))
        .collect();
    if notifications.is_empty() {
        return Ok(());
    }
    let statement = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    pipelined(notifications.iter().map(|(channel, payload)| {
        let params: [&(dyn ToSql + Sync); 2] = [channel, payload];
        tx.execute_raw(&statement, params)
    }))
    .await?;
    Ok(())
}

/// Awaits `statements` together: tokio-postgres sends a statement when its
/// future is first polled, so all of them go out, in order, before any
/// answer is awaited, and the server runs them in that order.
pub(super) async fn pipelined<F>(statements: impl IntoIterator<Item = F>) -> Result<(), tokio_postgres::Error>
where
    F: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    let mut pending: Vec<Option<Pin<Box<F>>>> = statements.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for slot in &mut pending {
            let Some(statement) = slot else { continue };
            match statement.as_mut().poll(cx) {
                Poll::Ready(Ok(_)) => *slot = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => done = false,
            }
        }
        if done { Poll::Ready(Ok(())) } else { Poll::Pending }
    })
    .await
}
