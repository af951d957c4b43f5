//! A session's storage: its versions and compare-and-set.

use serde_json::json;
use sessiond::domain::{EncodedStorage, EventType, SessionKind, StorageMap, VersionedStorage};
use sessiond::store::{StoreError, Stores};

use crate::*;

/// Storage starts at version 0 when empty, 1 when given, and changes by compare-and-set.
pub async fn storage_versions_start_at_zero_or_one_and_compare_and_set(store: Stores) {
    let empty = session(SessionKind::WebUser, None, T0);
    let filled = session(SessionKind::WebUser, None, T0);
    let initial = storage_of(&[("cart", json!({"items": [1, 2]})), ("theme", json!("dark"))]);
    create(&*store.sessions, &empty, &StorageMap::new()).await;
    create(&*store.sessions, &filled, &initial).await;
    assert_eq!(store.storage.storage(&empty.id).await.expect("storage is readable"), VersionedStorage::default());
    let read = store.storage.storage(&filled.id).await.expect("storage is readable");
    assert_eq!(read, VersionedStorage { version: 1, values: initial });

    let values = storage_of(&[("n", json!(1.5)), ("none", json!(null))]);
    let changed = event(EventType::StorageChanged, &empty, T0);
    let (version, recorded) = store
        .storage
        .replace_storage(&empty.id, 0, EncodedStorage::encode(&values), changed.clone())
        .await
        .expect("the version matches");
    assert_eq!((version, recorded.event), (1, changed.clone()));
    assert_eq!(
        store.storage.storage(&empty.id).await.expect("storage is readable"),
        VersionedStorage { version: 1, values }
    );
    let stale =
        store.storage.replace_storage(&empty.id, 0, EncodedStorage::encode(&StorageMap::new()), changed.clone()).await;
    assert!(matches!(stale, Err(StoreError::Conflict { current: 1 })), "{stale:?}");
    let (version, _) = store
        .storage
        .replace_storage(&empty.id, 1, EncodedStorage::encode(&StorageMap::new()), changed.clone())
        .await
        .expect("the version matches");
    assert_eq!(version, 2);
    assert_eq!(
        store.storage.storage(&empty.id).await.expect("storage is readable"),
        VersionedStorage { version: 2, values: StorageMap::new() }
    );
}

/// Read-modify-write cycles retried on conflict lose no update under contention.
pub async fn concurrent_storage_increments_lose_none(store: Stores) {
    const WRITERS: u64 = 100;
    let s = session(SessionKind::Standalone, None, T0);
    create(&*store.sessions, &s, &storage_of(&[("n", json!(0))])).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                loop {
                    let read = store.storage.storage(&s.id).await.expect("storage is readable");
                    let n = read.values["n"].as_u64().expect("n holds a number");
                    let next = storage_of(&[("n", json!(n + 1))]);
                    let changed = event(EventType::StorageChanged, &s, T0);
                    match store
                        .storage
                        .replace_storage(&s.id, read.version, EncodedStorage::encode(&next), changed.clone())
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("an increment failed: {e:?}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no increment panicked");
    }
    let read = store.storage.storage(&s.id).await.expect("storage is readable");
    assert_eq!(read.values["n"], json!(WRITERS));
    assert_eq!(read.version, 1 + WRITERS);
    assert_eq!(store.events.last_event_sequence().await.expect("the sequence is readable"), 1 + WRITERS);
}
