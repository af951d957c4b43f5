//! Striped per-session locks.
//!
//! Grants and storage are changed by read-modify-write with compare-and-set
//! in the store. Concurrent changes to one session from this process would
//! mostly collide and retry; holding the session's stripe across the
//! read-modify-write makes them queue instead, so compare-and-set only has
//! to settle races with other processes sharing the store.

use std::hash::{BuildHasher as _, RandomState};

use tokio::sync::{Mutex, MutexGuard};

use crate::domain::SessionId;

const STRIPES: usize = 1024;

#[derive(Debug)]
pub(super) struct SessionLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Default for SessionLocks {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(), hasher: RandomState::new() }
    }
}

impl SessionLocks {
    /// Holds `id`'s stripe until the guard drops. Sessions sharing a stripe
    /// wait on each other briefly; that is the price of a fixed table.
    pub(super) async fn lock(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(id) as usize % STRIPES;
        self.stripes[stripe].lock().await
    }
}
