//! The read side: a few query-only connections, each owned by a thread of
//! its own that takes reads from one shared queue. WAL lets them see every
//! committed batch without waiting for the writer.
//!
//! Not tokio's blocking threads: there every read paid a hand-off to a
//! blocking thread and back, and with many reads in flight the threads
//! queued on the connections' locks; waking them took a third of a cold
//! read's CPU (BENCHMARKS.md, "Cold reads: reader threads of their own").
//! A reader thread that finds reads queued takes the next without
//! sleeping.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::{SqliteStore, schema};
use crate::store::{StoreError, StoreResult};

/// Read connections (and their threads); reads beyond this many wait in
/// the queue for one to be free.
const READERS: usize = 4;

/// A read, run on a reader thread's connection.
type Job = Box<dyn FnOnce(&Connection) + Send>;

/// The reader threads and their queue.
pub(super) struct ReadPool {
    /// `None` once closing: the threads see the queue closed and end.
    queue: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl ReadPool {
    /// Opens the query-only connections to the database at `path` and
    /// starts a thread for each.
    pub(super) fn open(path: &Path) -> StoreResult<ReadPool> {
        let conns = (0..READERS)
            .map(|_| {
                let conn = schema::connect(path)?;
                conn.pragma_update(None, "query_only", true)?;
                Ok(conn)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        let threads = conns
            .into_iter()
            .enumerate()
            .map(|(n, conn)| {
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name(format!("sqlite-reader-{n}"))
                    .spawn(move || serve(&conn, &jobs))
                    .map_err(|e| StoreError::Internal(Box::new(e)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ReadPool { queue: Some(queue), threads })
    }
}

/// Runs reads on `conn` until the queue closes. A read that panics leaves
/// no half-done state behind (its statements are reset when dropped), so
/// the thread goes on; the read's caller sees it failed.
fn serve(conn: &Connection, jobs: &crossbeam_channel::Receiver<Job>) {
    for job in jobs {
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
            tracing::error!("a read of the embedded store panicked");
        }
    }
}

impl Drop for ReadPool {
    /// Closes the queue and waits for the threads to finish the reads
    /// queued and close their connections, so the file is released when
    /// the store is gone.
    fn drop(&mut self) {
        drop(self.queue.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Runs `read` on a reader thread's connection.
    pub(super) async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The caller may have stopped waiting (its deadline passed).
            let _ = answer.send(read(conn));
        });
        let closed = || crate::store::sql::internal("the embedded store is closed");
        let queue = self.readers.queue.as_ref().ok_or_else(closed)?;
        queue.send(job).map_err(|_| closed())?;
        match tokio::time::timeout(super::STALL_DEADLINE, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(crate::store::sql::internal("a read of the embedded store failed")),
            Err(_) => Err(super::stalled()),
        }
    }
}
