//! The writer thread and its group commit.
//!
//! Each write is a closure sent to the writer thread. The writer takes every
//! write waiting (up to `MAX_BATCH`), opens one transaction and runs each
//! inside its own `SAVEPOINT`: a write that fails (an ended session, a
//! version conflict) is rolled back alone and answered its error while the
//! rest of the batch commits. Callers are answered after the `COMMIT`, which
//! with `synchronous=FULL` means the change is on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use super::error::{BatchFailure, batch_failure, internal};
use crate::store::{StoreError, StoreResult};
use crate::telemetry::throttle::{self, Admitted, Cause};

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 512;
/// Writes that may wait for the writer before callers wait to queue more.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// Where writes wait for the writer thread; closing it stops the thread once
/// the queue is empty.
pub(super) type WriteQueue = mpsc::Sender<Box<dyn WriteOp>>;

/// Starts the writer thread on `conn` and answers the queue that feeds it.
pub(super) fn start(conn: Connection) -> StoreResult<(WriteQueue, JoinHandle<()>)> {
    let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run_writer(conn, queue))
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
    Ok((writes, thread))
}

impl SqliteStore {
    /// Queues `op` for the writer and waits until its batch committed.
    pub(super) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Pending { op: Some(op), result: None, reply });
        let committed = async {
            self.writes.send(pending).await.map_err(|_| internal("the sqlite writer has stopped"))?;
            answer.await.map_err(|_| internal("the sqlite writer has stopped"))?
        };
        tokio::time::timeout(super::STALL_DEADLINE, committed).await.unwrap_or_else(|_| Err(super::stalled()))
    }
}

/// One queued write: run on the writer thread, answered after its batch.
pub(super) trait WriteOp: Send {
    /// Runs the write; `false` when it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: its own result, or why its batch did not commit.
    fn answer(self: Box<Self>, batch_failure: Option<&BatchFailure>);
}

/// A write closure, then its result until the batch is over.
struct Pending<T, F> {
    op: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteOp for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        // Its caller stopped waiting (gave up, or went away): not applied.
        if self.reply.is_closed() {
            return false;
        }
        // A panicking write fails alone instead of taking the writer down.
        let result = catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| Err(internal("a write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch_failure: Option<&BatchFailure>) {
        let result = match (batch_failure, self.result) {
            (Some(failure), _) => Err(failure.for_each_write()),
            (None, Some(result)) => result,
            (None, None) => Err(internal("the write was never run")),
        };
        // The caller may have stopped waiting; then no one needs the answer.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: commits queued writes in batches until the store is
/// dropped and the queue is empty.
fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Box<dyn WriteOp>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let outcome = run_batch(&conn, &mut batch)
            .and_then(|()| conn.execute_batch("COMMIT"))
            .map_err(|e| (batch_failure(&conn, &e), e));
        if let Err((failure, e)) = &outcome {
            const LINE: &str = "a sqlite write batch did not commit";
            let kind = failure.kind();
            if let Some(Admitted { repeated }) = throttle::admit(Cause::new(tracing::Level::ERROR, LINE, kind)) {
                tracing::error!(error = %e, writes = batch.len(), cause = kind, repeated, "{LINE}");
            }
            if !conn.is_autocommit() {
                // Failing to roll back leaves nothing more to do: the next
                // BEGIN fails and answers that batch its error.
                let _ = conn.execute_batch("ROLLBACK");
            }
        } else {
            tracing::trace!(writes = batch.len(), "committed a sqlite write batch");
        }
        for op in batch.drain(..) {
            op.answer(outcome.as_ref().err().map(|(failure, _)| failure));
        }
    }
}

/// Runs a batch in one open transaction, each write in its own savepoint.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteOp>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for op in batch {
        conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        if !op.run(conn) {
            conn.prepare_cached("ROLLBACK TO write")?.execute([])?;
        }
        conn.prepare_cached("RELEASE write")?.execute([])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
        store
            .write(|conn| Ok(conn.execute("CREATE TABLE scratch (n INTEGER)", [])?))
            .await
            .expect("a table is created");
        let failed = store.write(|conn| {
            conn.execute("INSERT INTO scratch VALUES (1)", [])?;
            Err::<(), _>(StoreError::NotFound)
        });
        let kept = store.write(|conn| Ok(conn.execute("INSERT INTO scratch VALUES (2)", [])?));
        let (failed, kept) = tokio::join!(failed, kept);
        assert!(matches!(failed, Err(StoreError::NotFound)));
        kept.expect("a write beside a failed one commits");
        let rows: Vec<i64> = store
            .read(|conn| {
                Ok(conn.prepare("SELECT n FROM scratch")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
            })
            .await
            .expect("the scratch table is readable");
        assert_eq!(rows, [2]);
    }
}
