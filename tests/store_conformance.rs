//! Runs the store conformance suite on `SqliteStore`, each test on its own
//! database in a fresh temporary directory, plus what only an embedded
//! store has to show: its file outlives the process that wrote it; and on
//! `MemoryStore`, plain, cached and metered.

use serde_json::json;
use sessiond::clock::UnixMillis;
use sessiond::domain::{EndReason, LogLevel, LogQuery, SessionKind, StorageMap, VersionedStorage};
use sessiond::store::sqlite::SqliteStore;
use sessiond::store::{EventLog, SessionLogs, SessionRecords, SessionStorage, Stores};
use sessiond_conformance::{T0, create, end, entry, session};
use tempfile::TempDir;

/// A fresh store; the directory is deleted when the guard is dropped.
fn fresh() -> (TempDir, Stores) {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
    (dir, Stores::of(store))
}

sessiond_conformance::store_conformance_tests!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_limit_is_refused_creates_on_every_path() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens").with_max_open_sessions_per_tenant(3);
    sessiond_conformance::a_tenant_at_a_limit_of_three_is_refused_creates_on_every_path(Stores::of(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_log_limit_is_refused_appends_on_every_path() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens").with_max_log_entries_per_tenant(10);
    sessiond_conformance::a_tenant_at_a_limit_of_ten_log_entries_is_refused_appends_on_every_path(Stores::of(store))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_the_database_keeps_sessions_storage_logs_and_events() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let path = dir.path().join("nested").join("sessiond.db");
    let open = session(SessionKind::WebUser, Some("alice"), T0);
    let ended = session(SessionKind::WebCall, None, T0);
    let values = StorageMap::from([("cart".to_owned(), json!([1, 2, 3]))]);

    let store = SqliteStore::open(&path).expect("a database opens in a directory it creates");
    create(&store, &open, &values).await;
    create(&store, &ended, &StorageMap::new()).await;
    store.append_logs(&ended.id, vec![entry(LogLevel::Error, "kept", T0)]).await.expect("appended");
    let ending = end(&store, &ended, EndReason::Failed, UnixMillis(T0.0 + 5), true).await;
    drop(store);

    let store = SqliteStore::open(&path).expect("the database reopens");
    assert_eq!(store.session_by_token(&open.token_hash).await.expect("lookup works"), Some(open.clone()));
    let reread = store.session_by_id(&ended.id).await.expect("lookup works").expect("the session survived");
    assert_eq!(reread.end, Some(ending));
    assert_eq!(store.storage(&open.id).await.expect("storage is readable"), VersionedStorage { version: 1, values });
    let logs = store.query_logs(&LogQuery { limit: 10, ..LogQuery::default() }).await.expect("logs are queryable");
    assert_eq!(logs.records.iter().map(|r| r.entry.message.as_str()).collect::<Vec<_>>(), ["kept"]);
    assert_eq!(store.last_event_sequence().await.expect("the sequence is readable"), 3);
    let next = session(SessionKind::WebUser, None, T0);
    assert_eq!(create(&store, &next, &StorageMap::new()).await.sequence, 4, "numbering goes on after a restart");
}

/// The same suite through the moka cache: the decorator must be a store
/// like any other, answering what the store behind it would.
mod cached {
    use sessiond::store::Stores;
    use sessiond::store::sqlite::SqliteStore;
    use tempfile::TempDir;

    fn fresh() -> (TempDir, Stores) {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let store = SqliteStore::open_in(dir.path()).expect("a fresh database opens");
        (dir, Stores::of(store).cached(1_000))
    }

    sessiond_conformance::store_conformance_tests!(fresh());
}

/// The same suite on the store in memory, directly and through each
/// decorator.
mod memory {
    use sessiond::store::Stores;
    use sessiond::store::memory::MemoryStore;

    fn fresh() -> ((), Stores) {
        ((), Stores::of(MemoryStore::new()))
    }

    sessiond_conformance::store_conformance_tests!(fresh());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_at_its_limit_is_refused_creates_on_every_path() {
        let store = Stores::of(MemoryStore::new().with_max_open_sessions_per_tenant(3)).cached(1_000);
        sessiond_conformance::a_tenant_at_a_limit_of_three_is_refused_creates_on_every_path(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_at_its_log_limit_is_refused_appends_on_every_path() {
        let store = Stores::of(MemoryStore::new().with_max_log_entries_per_tenant(10)).cached(1_000);
        sessiond_conformance::a_tenant_at_a_limit_of_ten_log_entries_is_refused_appends_on_every_path(store).await;
    }

    mod cached {
        fn fresh() -> ((), sessiond::store::Stores) {
            let ((), stores) = super::fresh();
            ((), stores.cached(1_000))
        }

        sessiond_conformance::store_conformance_tests!(fresh());
    }

    mod metered {
        fn fresh() -> ((), sessiond::store::Stores) {
            let ((), stores) = super::fresh();
            ((), stores.metered("memory"))
        }

        sessiond_conformance::store_conformance_tests!(fresh());
    }
}
