//! Maps split into shards, each behind its own lock: for state that every
//! call reads, so that calls on different keys share no lock. Which shard
//! holds a key is the user's choice ([`Shards::at`] takes any number).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug)]
pub(crate) struct Shards<K, V>(Box<[Shard<K, V>]>);

/// One shard: a map behind a reader-writer lock.
#[derive(Debug)]
pub(crate) struct Shard<K, V>(RwLock<HashMap<K, V>>);

impl<K, V> Shards<K, V> {
    pub(crate) fn new(count: usize) -> Self {
        Self((0..count.max(1)).map(|_| Shard(RwLock::new(HashMap::new()))).collect())
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
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<K, V>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, V>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}
