//! The read side: a small pool of query-only connections, used on tokio's
//! blocking threads. WAL lets them see every committed batch without waiting
//! for the writer.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::Connection;

use super::{SqliteStore, schema};
use crate::store::{StoreError, StoreResult};

/// Read connections; reads beyond this many wait for one to be free.
const READERS: usize = 4;

/// The read connections, each behind its own lock.
pub(super) struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    /// Opens the pool's query-only connections to the database at `path`.
    pub(super) fn open(path: &Path) -> StoreResult<ReadPool> {
        let conns = (0..READERS)
            .map(|_| {
                let conn = schema::connect(path)?;
                conn.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ReadPool { conns, next: AtomicUsize::new(0) })
    }

    /// A free connection if there is one, else waits for the next in turn.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.conns.len();
        let ring = (0..count).map(|i| &self.conns[(start + i) % count]);
        for conn in ring {
            match conn.try_lock() {
                Ok(guard) => return guard,
                // A reader that panicked leaves no half-done state behind:
                // its statements were reset when they were dropped.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.conns[start % count].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SqliteStore {
    /// Runs `read` on a pooled read connection on a blocking thread.
    pub(super) async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let read = tokio::task::spawn_blocking(move || read(&readers.connection()));
        match tokio::time::timeout(super::STALL_DEADLINE, read).await {
            Ok(done) => done.map_err(|e| StoreError::Internal(Box::new(e)))?,
            Err(_) => Err(super::stalled()),
        }
    }
}
