//! Maps split into shards, each behind its own lock: for state that every
//! call reads, so that calls on different keys share no lock. Which shard
//! holds a key is the user's choice ([`Shards::at`] takes any number).
//!
//! The maps hash with foldhash, several times cheaper than std's SipHash
//! on the short keys they hold: their keys are made by sessiond (session
//! ids, token digests), not chosen by callers, so collision flooding is
//! not a concern.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One shard's map.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug)]
pub(crate) struct Shards<K, V>(Box<[Shard<K, V>]>);

/// One shard: a map behind a reader-writer lock.
#[derive(Debug)]
pub(crate) struct Shard<K, V>(RwLock<Map<K, V>>);

impl<K, V> Shards<K, V> {
    pub(crate) fn new(count: usize) -> Self {
        Self((0..count.max(1)).map(|_| Shard(RwLock::new(Map::default()))).collect())
    }

    /// Shard `n` modulo the number of shards.
    pub(crate) fn at(&self, n: usize) -> &Shard<K, V> {
        &self.0[n % self.0.len()]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard<K, V>> {
        self.0.iter()
    }
}

/// A poisoned shard only means a panic between two map operations, each of
/// which leaves the map whole: keep using it.
impl<K, V> Shard<K, V> {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Map<K, V>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Map<K, V>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}
