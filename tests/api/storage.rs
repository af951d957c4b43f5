//! Per-session storage: structured values, versions and optimistic
//! concurrency, limits, and durability across a restart.

use std::collections::{BTreeMap, HashMap};

use prost_types::value::Kind as ValueKind;
use prost_types::{ListValue, Struct, Value};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::Code;

use crate::helpers::{
    TestApp, as_number, assert_invalid, by_token, error_metadata, error_reason, failure, next_events, number, text,
};

fn value(kind: ValueKind) -> Value {
    Value { kind: Some(kind) }
}

fn values(entries: &[(&str, Value)]) -> HashMap<String, Value> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn structured() -> HashMap<String, Value> {
    let address = Struct {
        fields: BTreeMap::from([
            ("city".to_owned(), text("Lyon")),
            ("zip".to_owned(), number(69001.0)),
            (
                "tags".to_owned(),
                value(ValueKind::ListValue(ListValue {
                    values: vec![text("home"), value(ValueKind::BoolValue(false))],
                })),
            ),
        ]),
    };
    values(&[
        ("address", value(ValueKind::StructValue(address))),
        (
            "cart",
            value(ValueKind::ListValue(ListValue {
                values: vec![number(1.0), number(2.5), value(ValueKind::NullValue(0))],
            })),
        ),
        ("count", number(-3.0)),
        ("admin", value(ValueKind::BoolValue(true))),
        ("nothing", value(ValueKind::NullValue(0))),
        ("name", text("Ada")),
    ])
}

async fn create_with_storage(app: &mut TestApp, storage: HashMap<String, Value>) -> String {
    app.create_with(pb::CreateSessionRequest { kind: Kind::WebUser.into(), storage, ..Default::default() }).await.token
}

async fn get(app: &mut TestApp, token: &str, keys: &[&str]) -> pb::GetStorageResponse {
    let keys = keys.iter().map(|k| (*k).to_owned()).collect();
    app.storage
        .get_storage(pb::GetStorageRequest { session: by_token(token), keys })
        .await
        .expect("GetStorage")
        .into_inner()
}

async fn get_status(app: &mut TestApp, token: &str, keys: &[&str]) -> Result<pb::GetStorageResponse, tonic::Status> {
    let keys = keys.iter().map(|k| (*k).to_owned()).collect();
    Ok(app.storage.get_storage(pb::GetStorageRequest { session: by_token(token), keys }).await?.into_inner())
}

async fn put(
    app: &mut TestApp,
    token: &str,
    entries: &[(&str, Value)],
    expected_version: Option<u64>,
) -> Result<u64, tonic::Status> {
    let request = pb::PutStorageRequest { session: by_token(token), values: values(entries), expected_version };
    Ok(app.storage.put_storage(request).await?.into_inner().version)
}

#[tokio::test]
async fn initial_structured_storage_round_trips() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, structured()).await;

    let stored = get(&mut app, &token, &[]).await;

    assert_eq!(stored.values, structured());
    assert_eq!(stored.version, 1);
}

#[tokio::test]
async fn a_session_without_initial_storage_starts_empty_at_version_zero() {
    let mut app = TestApp::spawn().await;
    let token = app.create(Kind::WebUser, "").await.token;

    let stored = get(&mut app, &token, &[]).await;

    assert!(stored.values.is_empty());
    assert_eq!(stored.version, 0);
}

#[tokio::test]
async fn get_answers_only_the_named_keys_that_exist() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, structured()).await;

    let some = get(&mut app, &token, &["name", "count", "missing"]).await;

    assert_eq!(some.values, values(&[("name", text("Ada")), ("count", number(-3.0))]));
    assert_eq!(some.version, 1);
}

#[tokio::test]
async fn put_delete_and_clear_each_bump_the_version() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, values(&[("a", number(1.0))])).await;

    let put_version =
        put(&mut app, &token, &[("b", text("two")), ("a", number(10.0))], None).await.expect("PutStorage");
    assert_eq!(put_version, 2);
    assert_eq!(get(&mut app, &token, &[]).await.values, values(&[("a", number(10.0)), ("b", text("two"))]));

    let deleted = app
        .storage
        .delete_storage(pb::DeleteStorageRequest {
            session: by_token(&token),
            keys: vec!["a".into()],
            expected_version: Some(2),
        })
        .await
        .expect("DeleteStorage")
        .into_inner();
    assert_eq!(deleted.version, 3);
    assert_eq!(get(&mut app, &token, &[]).await.values, values(&[("b", text("two"))]));

    let cleared = app
        .storage
        .clear_storage(pb::ClearStorageRequest { session: by_token(&token), expected_version: None })
        .await
        .expect("ClearStorage")
        .into_inner();
    assert_eq!(cleared.version, 4);
    let stored = get(&mut app, &token, &[]).await;
    assert!(stored.values.is_empty());
    assert_eq!(stored.version, 4);
}

#[tokio::test]
async fn a_delete_that_removes_nothing_changes_nothing() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let (token, id) = (created.token, created.session.expect("a session").session_id);
    put(&mut app, &token, &[("a", number(1.0))], None).await.expect("PutStorage");

    let deleted = app
        .storage
        .delete_storage(pb::DeleteStorageRequest {
            session: by_token(&token),
            keys: vec!["missing".into()],
            expected_version: Some(1),
        })
        .await
        .expect("deleting a missing key succeeds")
        .into_inner();
    assert_eq!(deleted.version, 1, "the current version, unchanged");
    app.storage
        .delete_storage(pb::DeleteStorageRequest {
            session: by_token(&token),
            keys: vec!["a".into()],
            expected_version: None,
        })
        .await
        .expect("DeleteStorage");
    let cleared = app
        .storage
        .clear_storage(pb::ClearStorageRequest { session: by_token(&token), expected_version: None })
        .await
        .expect("clearing an empty storage succeeds")
        .into_inner();
    assert_eq!(cleared.version, 2, "clearing nothing changes nothing either");
    app.close(&token, "").await;

    // Only the put and the delete that removed a key were recorded.
    let mut events =
        app.watch(pb::WatchSessionsRequest { session_id: id, after_sequence: Some(0), ..Default::default() }).await;
    let types: Vec<_> = next_events(&mut events, 4).await.into_iter().map(|e| e.r#type()).collect();
    use pb::EventType as E;
    assert_eq!(types, [E::Created, E::StorageChanged, E::StorageChanged, E::Closed]);
}

#[tokio::test]
async fn a_stale_expected_version_is_aborted_with_the_current_version() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, values(&[("a", number(1.0))])).await;
    put(&mut app, &token, &[("a", number(2.0))], Some(1)).await.expect("the expected version is current");

    let status = failure(put(&mut app, &token, &[("a", number(3.0))], Some(1)).await);

    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status).as_deref(), Some("VERSION_CONFLICT"));
    assert_eq!(error_metadata(&status, "current_version").as_deref(), Some("2"));
    assert_eq!(
        get(&mut app, &token, &["a"]).await.values,
        values(&[("a", number(2.0))]),
        "the stale write did nothing"
    );

    let status = failure(
        app.storage
            .delete_storage(pb::DeleteStorageRequest {
                session: by_token(&token),
                keys: vec!["a".into()],
                expected_version: Some(1),
            })
            .await,
    );
    assert_eq!(status.code(), Code::Aborted);
    let status = failure(
        app.storage
            .clear_storage(pb::ClearStorageRequest { session: by_token(&token), expected_version: Some(7) })
            .await,
    );
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_metadata(&status, "current_version").as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_modify_write_increments_are_never_lost() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, values(&[("counter", number(0.0))])).await;

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let mut client = app.storage.clone();
            let token = token.clone();
            tokio::spawn(async move {
                loop {
                    let current = client
                        .get_storage(pb::GetStorageRequest { session: by_token(&token), keys: vec!["counter".into()] })
                        .await
                        .expect("GetStorage")
                        .into_inner();
                    let next = as_number(&current.values["counter"]) + 1.0;
                    let request = pb::PutStorageRequest {
                        session: by_token(&token),
                        values: values(&[("counter", number(next))]),
                        expected_version: Some(current.version),
                    };
                    match client.put_storage(request).await {
                        Ok(_) => return,
                        Err(status) if status.code() == Code::Aborted => continue,
                        Err(status) => panic!("unexpected failure: {status:?}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task does not panic");
    }

    let stored = get(&mut app, &token, &[]).await;
    assert_eq!(as_number(&stored.values["counter"]), 100.0);
    assert_eq!(stored.version, 101);
}

#[tokio::test]
async fn a_key_too_long_is_an_invalid_argument_told_by_its_length_never_echoed() {
    let mut app = TestApp::spawn_with(|s| s.limits.storage_max_key_bytes = 8).await;
    let token = app.create(Kind::WebUser, "").await.token;

    let status = failure(put(&mut app, &token, &[("ninechars", number(1.0)), ("ok", number(1.0))], None).await);

    assert_invalid(&status, "values");
    let details = format!("{:?} {:?}", status.message(), status.details());
    assert!(!details.contains("ninechars"), "the key is not echoed: {details}");
    let status = failure(get_status(&mut app, &token, &["ninechars"]).await);
    assert_invalid(&status, "keys[0]");
    assert!(!format!("{:?} {:?}", status.message(), status.details()).contains("ninechars"));
    assert_eq!(get(&mut app, &token, &[]).await.version, 0, "nothing was written");
    put(&mut app, &token, &[("eightchr", number(1.0))], None).await.expect("a key at the limit is fine");
}

#[tokio::test]
async fn a_value_too_large_is_refused() {
    let mut app = TestApp::spawn_with(|s| s.limits.storage_max_value_bytes = 64).await;
    let token = app.create(Kind::WebUser, "").await.token;

    let status = failure(put(&mut app, &token, &[("big", text(&"x".repeat(100)))], None).await);

    assert_invalid(&status, "values[big]");
    put(&mut app, &token, &[("small", text(&"x".repeat(40)))], None).await.expect("a small value is fine");
}

#[tokio::test]
async fn too_many_keys_exhaust_the_quota() {
    let mut app = TestApp::spawn_with(|s| s.limits.storage_max_keys = 3).await;
    let token = app.create(Kind::WebUser, "").await.token;
    put(&mut app, &token, &[("a", number(1.0)), ("b", number(2.0))], None).await.expect("two keys fit");

    let status = failure(put(&mut app, &token, &[("c", number(3.0)), ("d", number(4.0))], None).await);

    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let stored = get(&mut app, &token, &[]).await;
    assert_eq!((stored.values.len(), stored.version), (2, 1), "the refused write did nothing");
    put(&mut app, &token, &[("a", number(5.0)), ("c", number(3.0))], None).await.expect("three keys fit");

    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        storage: values(&[("a", number(1.0)), ("b", number(1.0)), ("c", number(1.0)), ("d", number(1.0))]),
        ..Default::default()
    };
    // More keys than a session may ever hold is a request that cannot
    // succeed: an invalid argument, like every list over its limit.
    assert_invalid(&failure(app.sessions.create_session(request).await), "storage");
}

#[tokio::test]
async fn too_many_bytes_exhaust_the_quota() {
    let mut app = TestApp::spawn_with(|s| s.limits.storage_max_bytes = 100).await;
    let token = app.create(Kind::WebUser, "").await.token;
    put(&mut app, &token, &[("a", text(&"x".repeat(40)))], None).await.expect("fits");

    let status = failure(put(&mut app, &token, &[("b", text(&"x".repeat(60)))], None).await);

    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn storage_survives_a_restart() {
    let mut app = TestApp::spawn().await;
    let token = create_with_storage(&mut app, structured()).await;
    put(&mut app, &token, &[("name", text("Grace"))], None).await.expect("PutStorage");

    let mut app = app.restart().await;

    let stored = get(&mut app, &token, &[]).await;
    let mut expected = structured();
    expected.insert("name".into(), text("Grace"));
    assert_eq!(stored.values, expected);
    assert_eq!(stored.version, 2);
}

#[tokio::test]
async fn malformed_keys_and_values_are_named() {
    let mut app = TestApp::spawn().await;
    let token = app.create(Kind::WebUser, "").await.token;

    // A key that is not valid is named by its map, never echoed.
    let status = failure(put(&mut app, &token, &[("", number(1.0))], None).await);
    assert_invalid(&status, "values");
    let status = failure(put(&mut app, &token, &[("tab\there", number(1.0))], None).await);
    assert_invalid(&status, "values");
    let status =
        failure(put(&mut app, &token, &[("nan", number(f64::NAN)), ("inf", number(f64::INFINITY))], None).await);
    assert_invalid(&status, "values[nan]");
    assert_invalid(&status, "values[inf]");
    let status = failure(put(&mut app, &token, &[], None).await);
    assert_invalid(&status, "values");

    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        storage: values(&[("", number(1.0))]),
        ..Default::default()
    };
    assert_invalid(&failure(app.sessions.create_session(request).await), "storage");
    assert_eq!(get(&mut app, &token, &[]).await.version, 0, "nothing was written");
}

/// `n` concurrent puts of distinct keys without an expected version, which
/// the service promises to retry itself until they apply.
async fn concurrent_unconditional_puts(n: u32) {
    let mut app = TestApp::spawn().await;
    let token = app.create(Kind::WebUser, "").await.token;

    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client = app.storage.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let request = pb::PutStorageRequest {
                    session: by_token(&token),
                    values: values(&[(&format!("key{i}"), number(f64::from(i)))]),
                    expected_version: None,
                };
                client.put_storage(request).await.map(|_| ())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(status) = task.await.expect("the task does not panic") {
            failures.push(status);
        }
    }

    assert!(failures.is_empty(), "{} of {n} puts failed, e.g. {:?}", failures.len(), failures.first());
    let stored = get(&mut app, &token, &[]).await;
    assert_eq!((stored.values.len(), stored.version), (n as usize, u64::from(n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unconditional_puts_are_all_applied() {
    concurrent_unconditional_puts(32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_unconditional_puts_are_all_applied() {
    concurrent_unconditional_puts(300).await;
}
