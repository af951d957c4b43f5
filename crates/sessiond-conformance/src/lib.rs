//! Test support, not part of the service: the one conformance suite every
//! store implementation and decorator of sessiond must pass.
//!
//! Each case is a public async function taking a fresh, empty store as
//! [`Stores`](sessiond::store::Stores), one handle per aggregate (cheap to clone, so cases can
//! write from many tasks at once). A store's test file runs them all with
//! one line:
//!
//! ```ignore
//! fn fresh() -> (tempfile::TempDir, Stores) { /* ... */ }
//! sessiond_conformance::store_conformance_tests!(fresh());
//! ```
//!
//! The expression given to [`store_conformance_tests!`] is evaluated once
//! per case and must yield a `(guard, stores)` pair: the guard (a temporary
//! directory, a database handle, `()`) is kept alive until the stores have
//! been dropped. Every case is named in that macro's one list, and a test
//! the macro adds beside them fails when a case is left out of it.
//!
//! The cases, by what they hold a store to: `records` (sessions, their
//! activity, ends, grants, listings, counts and purge), `storage`, `logs`,
//! `events`, `tenants` and `requests` (idempotency records). The fixtures
//! the library's own unit tests share ([`T0`], [`session`], [`create`],
//! [`ending`]…) live in `sessiond::store::fixtures` and are re-exported
//! here, beside the suite's own.

use std::time::Duration;

use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EncodedStorage, EndReason, Event, EventType, LogEntry, LogLevel, LogQuery, RequestDigest, RequestKey, Session,
    SessionEnd, SessionId, StorageMap, TenantId,
};
use sessiond::store::{EndOutcome, Ending, NewRequest, Once, SessionRecords, Stores};

pub use sessiond::store::fixtures::*;

mod events;
mod logs;
mod records;
mod requests;
mod storage;
mod tenants;

pub use events::*;
pub use logs::*;
pub use records::*;
pub use requests::*;
pub use storage::*;
pub use tenants::*;

/// Expands to one `#[tokio::test]` per conformance test, each running on a
/// store made by `$make`, an expression yielding `(guard, stores)`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            creates_and_finds_a_session_by_token_and_id,
            recording_activity_moves_it_forward_only_and_reschedules_expiry,
            due_sessions_are_open_ones_oldest_expiry_first,
            ending_a_session_records_its_event_once,
            ending_deletes_the_log_unless_it_is_kept,
            writes_on_an_ended_session_fail_with_ended,
            writes_on_an_unknown_session_fail_with_not_found,
            grants_are_replaced_by_compare_and_set,
            storage_versions_start_at_zero_or_one_and_compare_and_set,
            concurrent_storage_increments_lose_none,
            log_numbering_continues_across_appends,
            concurrent_appends_number_each_log_without_gaps,
            query_logs_answers_kept_logs_matching_the_filters,
            query_logs_pages_by_entry_id,
            continuous_entries_are_readable_while_open,
            a_time_range_finds_its_entries_whenever_they_became_readable,
            list_sessions_filters_by_user_kind_state_and_id,
            list_sessions_pages_newest_first_without_duplicates_or_gaps,
            events_are_numbered_without_gaps_across_concurrent_writers,
            matching_events_are_filtered_by_the_store_within_their_range,
            a_failing_write_does_not_undo_concurrent_ones,
            purge_removes_old_ended_sessions_with_their_logs_and_old_events,
            sessions_events_and_logs_carry_their_tenant,
            list_sessions_and_query_logs_filter_by_tenant,
            a_keyed_create_is_stored_once_and_a_retry_is_answered_its_record,
            concurrent_keyed_creates_store_one_session,
            a_keyed_append_is_stored_once,
            keyed_and_plain_appends_racing_number_the_log_without_gaps,
            a_keyed_write_that_fails_leaves_no_record,
            an_expired_request_record_is_replaced_and_purged,
            ending_many_sessions_records_one_event_each_in_order,
            concurrent_batch_ends_record_one_event_per_session,
            recording_many_activities_moves_each_forward_only,
            an_end_keeps_the_activity_recorded_before_it,
            open_sessions_are_counted_by_kind_across_tenants,
            open_sessions_are_counted_per_tenant_through_every_opening_and_ending,
        );
    };
    (@each $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make;
                $crate::$name(store).await;
            }
        )*

        #[test]
        fn every_conformance_case_is_listed() {
            $crate::check_listed(&[$(stringify!($name)),*]);
        }
    };
}

/// The sources of the case modules, where [`check_listed`] finds every
/// case.
const CASE_SOURCES: [&str; 6] = [
    include_str!("records.rs"),
    include_str!("storage.rs"),
    include_str!("logs.rs"),
    include_str!("events.rs"),
    include_str!("tenants.rs"),
    include_str!("requests.rs"),
];

/// Panics naming every case (a `pub async fn` of a case module taking
/// `Stores`) that `listed` leaves out: the test [`store_conformance_tests!`]
/// adds beside the cases, so a case missing from its list fails every
/// store's run instead of running nowhere.
#[doc(hidden)]
pub fn check_listed(listed: &[&str]) {
    let unlisted: Vec<&str> = CASE_SOURCES
        .iter()
        .flat_map(|source| source.lines())
        .filter_map(|line| line.strip_prefix("pub async fn ")?.split_once("(store: Stores)").map(|(name, _)| name))
        .filter(|name| !listed.contains(name))
        .collect();
    assert!(unlisted.is_empty(), "cases missing from store_conformance_tests!: {unlisted:?}");
}

/// A tenant by name; `name` must be a valid tenant id.
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name, "tenant").expect("the suite names valid tenants")
}

/// The messages of the entries `query` finds (its first 100), in order.
pub async fn logged(store: &Stores, query: LogQuery) -> Vec<String> {
    let page = store.logs.query_logs(&LogQuery { limit: 100, ..query }).await.expect("logs are queryable");
    page.records.into_iter().map(|r| r.entry.message).collect()
}

/// A log entry at `level` received at `at`.
pub fn entry(level: LogLevel, message: &str, at: UnixMillis) -> LogEntry {
    LogEntry {
        level,
        message: message.to_owned(),
        exception: None,
        stack_trace: None,
        client_time: None,
        logged_at: at,
        continuous: false,
    }
}

/// Ends `session` for `reason` at `at`, expecting this call to end it.
pub async fn end(
    store: &dyn SessionRecords,
    session: &Session,
    reason: EndReason,
    at: UnixMillis,
    keep_log: bool,
) -> SessionEnd {
    let (end, event) = ending(session, reason, at, keep_log);
    match store.end_session(&session.id, &end, &event).await.expect("ending a stored session succeeds") {
        EndOutcome::Ended(recorded) => assert_eq!(recorded.event, event),
        EndOutcome::AlreadyEnded(_) => panic!("the session was open"),
    }
    end
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn storage_of(pairs: &[(&str, serde_json::Value)]) -> StorageMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

pub(crate) fn all_logs() -> LogQuery {
    LogQuery { limit: 1_000, ..LogQuery::default() }
}

pub(crate) fn ids<'a>(sessions: impl IntoIterator<Item = &'a Session>) -> Vec<SessionId> {
    sessions.into_iter().map(|s| s.id.clone()).collect()
}

/// An idempotency record with key `key` (one byte repeated) and digest
/// `digest`, stored at `at`, counting records before `expired_before` as
/// expired.
pub fn request(key: u8, digest: u8, at: UnixMillis, expired_before: UnixMillis) -> NewRequest {
    NewRequest {
        key: RequestKey([key; 32]),
        digest: RequestDigest([digest; 32]),
        sealed_token: Some(vec![key, digest, 7]),
        accepted: 3,
        at,
        expired_before,
    }
}

/// Stores `session`, with no storage, guarded by `request`.
pub async fn create_once(store: &dyn SessionRecords, session: &Session, request: &NewRequest) -> Once<Event> {
    let created = event(EventType::Created, session, session.created_at);
    store
        .create_session_once(session.clone(), EncodedStorage::encode(&StorageMap::new()), created, request.clone())
        .await
        .expect("a keyed create is answered")
}

pub(crate) fn ending_of(session: &Session, reason: EndReason, at: UnixMillis, keep_log: bool) -> Ending {
    let (end, event) = ending(session, reason, at, keep_log);
    Ending { id: session.id.clone(), end, event }
}
