//! Callers authenticate with API keys bound to a tenant and a role; a
//! tenant sees nothing of another's sessions, and only admins list or
//! revoke across users, watch a whole tenant or read logs.

use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use tonic::{Code, Request};

use crate::helpers::{TestApp, by_id, by_token, error_reason, failure, with_key};

/// Keys of two tenants, `acme` (a service and an admin) and `globex` (an
/// admin), and an app that knows them.
struct Tenants {
    app: TestApp,
    acme: String,
    acme_admin: String,
    globex: String,
}

async fn two_tenants() -> Tenants {
    let (acme, acme_admin, globex) = (generate_key().0, generate_key().0, generate_key().0);
    let keys = format!(
        "keys:\n  - {{name: acme-svc, tenant: acme, role: service, hash: \"{}\", allow: [session_ids]}}\n  - {{name: acme-admin, tenant: acme, role: admin, hash: \"{}\"}}\n  - {{name: globex-admin, tenant: globex, role: admin, hash: \"{}\"}}\n",
        hash_key(&acme),
        hash_key(&acme_admin),
        hash_key(&globex)
    );
    let app = TestApp::spawn_with_keys(&keys).await;
    Tenants { app, acme, acme_admin, globex }
}

/// Creates a web-user session of `user` with API key `key`.
async fn create(t: &mut Tenants, key: &str, user: &str) -> pb::CreateSessionResponse {
    let request = pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: user.into(), ..Default::default() };
    t.app.sessions.create_session(with_key(request, key)).await.expect("created").into_inner()
}

#[tokio::test]
async fn calls_without_a_valid_key_are_unauthenticated_but_health_stays_open() {
    let mut t = two_tenants().await;
    let request = || pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() };

    let missing = failure(t.app.sessions.create_session(request()).await);
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&missing).as_deref(), Some("API_KEY_MISSING"));
    let wrong = failure(t.app.sessions.create_session(with_key(request(), "sdk_not-a-key")).await);
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&wrong).as_deref(), Some("API_KEY_INVALID"));
    assert!(!wrong.message().contains("sdk_not-a-key"), "the key is never echoed");
    let mut basic = Request::new(request());
    basic.metadata_mut().insert("authorization", format!("Basic {}", t.acme).parse().unwrap());
    assert_eq!(failure(t.app.sessions.create_session(basic).await).code(), Code::Unauthenticated);

    let mut health = tonic_health::pb::health_client::HealthClient::new(t.app.channel.clone());
    let answer =
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health is open");
    assert_eq!(answer.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn another_tenant_gets_not_found_for_everything_of_a_session() {
    let mut t = two_tenants().await;
    let acme = t.acme.clone();
    let created = create(&mut t, &acme, "alice").await;
    let id = created.session.as_ref().expect("a session").session_id.clone();
    let globex = t.globex.clone();

    for session in [by_token(&created.token), by_id(&id)] {
        let get = failure(
            t.app.sessions.get_session(with_key(pb::GetSessionRequest { session: session.clone() }, &globex)).await,
        );
        assert_eq!(get.code(), Code::NotFound, "not PERMISSION_DENIED: nothing leaks");
        assert_eq!(error_reason(&get).as_deref(), Some("SESSION_NOT_FOUND"));
        let check = pb::HasPrivilegeRequest { session: session.clone(), privilege: "viewBasic".into() };
        assert_eq!(failure(t.app.privileges.has_privilege(with_key(check, &globex)).await).code(), Code::NotFound);
        let read = pb::GetStorageRequest { session: session.clone(), keys: vec![] };
        assert_eq!(failure(t.app.storage.get_storage(with_key(read, &globex)).await).code(), Code::NotFound);
        let log = pb::LogRequest {
            session: session.clone(),
            entries: vec![pb::LogEntry {
                level: pb::LogLevel::Error.into(),
                message: "x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(failure(t.app.logs.log(with_key(log, &globex)).await).code(), Code::NotFound);
        let close = pb::CloseSessionRequest { session: session.clone(), ..Default::default() };
        assert_eq!(failure(t.app.sessions.close_session(with_key(close, &globex)).await).code(), Code::NotFound);
    }

    let list = pb::ListSessionsRequest { user_id: "alice".into(), ..Default::default() };
    assert!(
        t.app.sessions.list_sessions(with_key(list, &globex)).await.expect("listed").into_inner().sessions.is_empty()
    );
    let revoke = pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() };
    assert!(
        t.app
            .sessions
            .revoke_sessions(with_key(revoke, &globex))
            .await
            .expect("answered")
            .into_inner()
            .session_ids
            .is_empty()
    );
    let revoke = pb::RevokeSessionsRequest { session_ids: vec![id.clone()], ..Default::default() };
    assert!(
        t.app
            .sessions
            .revoke_sessions(with_key(revoke, &globex))
            .await
            .expect("answered")
            .into_inner()
            .session_ids
            .is_empty()
    );

    let still =
        t.app.sessions.get_session(with_key(pb::GetSessionRequest { session: by_token(&created.token) }, &acme)).await;
    assert!(still.is_ok(), "the owner's session is untouched");
}

#[tokio::test]
async fn watchers_and_log_readers_see_only_their_tenant() {
    let mut t = two_tenants().await;
    let (acme, acme_admin, globex) = (t.acme.clone(), t.acme_admin.clone(), t.globex.clone());
    let watch = pb::WatchSessionsRequest { after_sequence: Some(0), ..Default::default() };
    let mut globex_events =
        t.app.sessions.watch_sessions(with_key(watch, &globex)).await.expect("watching").into_inner();

    let acme_session = create(&mut t, &acme, "alice").await;
    let close = pb::CloseSessionRequest {
        session: by_token(&acme_session.token),
        error: "failed".into(),
        ..Default::default()
    };
    t.app.sessions.close_session(with_key(close, &acme)).await.expect("closed");
    let globex_session = create(&mut t, &globex, "alice").await;

    let first = tokio::time::timeout(crate::helpers::PATIENCE, globex_events.message())
        .await
        .expect("an event")
        .expect("a message");
    assert_eq!(
        first.expect("an event").session_id,
        globex_session.session.expect("a session").session_id,
        "acme's events are not shown"
    );

    let query = || pb::QueryLogsRequest { user_id: "alice".into(), ..Default::default() };
    let globex_logs = t.app.logs.query_logs(with_key(query(), &globex)).await.expect("queried").into_inner();
    assert!(globex_logs.records.is_empty());
    let acme_logs = t.app.logs.query_logs(with_key(query(), &acme_admin)).await.expect("queried").into_inner();
    assert!(acme_logs.records.is_empty(), "the failed session logged nothing, but the query is allowed");
}

#[tokio::test]
async fn a_service_key_needs_admin_to_work_across_users() {
    let mut t = two_tenants().await;
    let (acme, acme_admin) = (t.acme.clone(), t.acme_admin.clone());
    create(&mut t, &acme, "alice").await;

    let everyone = || pb::ListSessionsRequest::default();
    let denied = failure(t.app.sessions.list_sessions(with_key(everyone(), &acme)).await);
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&denied).as_deref(), Some("ADMIN_ROLE_REQUIRED"));
    assert_eq!(
        t.app
            .sessions
            .list_sessions(with_key(everyone(), &acme_admin))
            .await
            .expect("admin lists")
            .into_inner()
            .sessions
            .len(),
        1
    );
    let alice = pb::ListSessionsRequest { user_id: "alice".into(), ..Default::default() };
    assert_eq!(
        t.app
            .sessions
            .list_sessions(with_key(alice, &acme))
            .await
            .expect("a user's sessions")
            .into_inner()
            .sessions
            .len(),
        1
    );

    let by_kind = || pb::RevokeSessionsRequest { kind: Kind::WebUser.into(), ..Default::default() };
    assert_eq!(
        failure(t.app.sessions.revoke_sessions(with_key(by_kind(), &acme)).await).code(),
        Code::PermissionDenied
    );
    assert_eq!(
        failure(t.app.logs.query_logs(with_key(pb::QueryLogsRequest::default(), &acme)).await).code(),
        Code::PermissionDenied
    );
    let whole = pb::WatchSessionsRequest::default();
    assert_eq!(failure(t.app.sessions.watch_sessions(with_key(whole, &acme)).await).code(), Code::PermissionDenied);
    assert_eq!(
        t.app
            .sessions
            .revoke_sessions(with_key(by_kind(), &acme_admin))
            .await
            .expect("admin revokes")
            .into_inner()
            .session_ids
            .len(),
        1
    );
}

#[tokio::test]
async fn an_invalid_keys_file_stops_start_up() {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), "keys: [{name: a, tenant: t, role: service, hash: md5:00}]").expect("written");
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut settings = sessiond::settings::Settings::for_tests("127.0.0.1:0".parse().unwrap(), data.path().to_owned());
    settings.auth.api_keys_file = Some(file.path().to_owned());
    assert!(sessiond::startup::Application::build(settings).await.is_err(), "never falls back to running open");
}

#[tokio::test]
async fn tenants_may_use_the_same_request_id_without_meeting() {
    let mut t = two_tenants().await;
    let request = || pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        request_id: "0b6c2e9d-7a41-4c38-8f5e-3d1a9b7c6e20".into(),
        ..Default::default()
    };
    let ours = t.app.sessions.create_session(with_key(request(), &t.acme)).await.expect("created").into_inner();
    let theirs = t.app.sessions.create_session(with_key(request(), &t.globex)).await.expect("created").into_inner();
    assert_ne!(ours.token, theirs.token);
    let again = t.app.sessions.create_session(with_key(request(), &t.acme)).await.expect("retried").into_inner();
    assert_eq!(again.token, ours.token);
    let again = t.app.sessions.create_session(with_key(request(), &t.globex)).await.expect("retried").into_inner();
    assert_eq!(again.token, theirs.token);
}

#[tokio::test]
async fn watching_an_unknown_or_another_tenants_session_is_not_found() {
    let mut t = two_tenants().await;
    let (acme, globex) = (t.acme.clone(), t.globex.clone());
    let created = create(&mut t, &acme, "alice").await;
    let id = created.session.as_ref().expect("a session").session_id.clone();
    let globex_id = create(&mut t, &globex, "bob").await.session.expect("a session").session_id;
    // A well-formed id that no tenant has: globex's session id with its
    // last character changed.
    let mut missing = globex_id.clone();
    let last = missing.pop().expect("ids are not empty");
    missing.push(if last == 'a' { 'b' } else { 'a' });

    let watch = |session_id: &str| pb::WatchSessionsRequest {
        session_id: session_id.into(),
        after_sequence: Some(0),
        ..Default::default()
    };
    for (key, session_id) in [(&globex, &id), (&acme, &missing), (&acme, &globex_id)] {
        let refused = failure(t.app.sessions.watch_sessions(with_key(watch(session_id), key)).await);
        assert_eq!(refused.code(), Code::NotFound, "watching {session_id}");
        assert_eq!(error_reason(&refused).as_deref(), Some("SESSION_NOT_FOUND"));
    }

    let mut own = t.app.sessions.watch_sessions(with_key(watch(&id), &acme)).await.expect("watching").into_inner();
    let first = tokio::time::timeout(crate::helpers::PATIENCE, own.message())
        .await
        .expect("an event")
        .expect("a message")
        .expect("an event");
    assert_eq!(first.session_id, id, "the owner watches its own session");
}

#[tokio::test]
async fn serving_open_beyond_loopback_is_refused_at_start_up() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let settings = sessiond::settings::Settings::for_tests("0.0.0.0:0".parse().unwrap(), data.path().to_owned());
    let refused = match sessiond::startup::Application::build(settings).await {
        Ok(_) => panic!("sessiond served open on every interface"),
        Err(err) => format!("{err:#}"),
    };
    assert!(refused.contains("0.0.0.0:0"), "names the address: {refused}");
    assert!(refused.contains("--api-keys-file") && refused.contains("--tls-client-ca"), "{refused}");
    assert!(refused.contains("--allow-unauthenticated"), "{refused}");
}

#[test]
fn the_binary_refuses_to_serve_open_on_every_interface() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--log-filter", "error"])
        .arg("--data-dir")
        .arg(data.path())
        .env("SESSIOND_LISTEN", "0.0.0.0:0")
        .env_remove("SESSIOND_API_KEYS_FILE")
        .env_remove("SESSIOND_ALLOW_UNAUTHENTICATED")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sessiond runs");
    assert!(!run.status.success(), "refused with a failed exit");
    let said = String::from_utf8_lossy(&run.stderr) + String::from_utf8_lossy(&run.stdout);
    assert!(said.contains("refusing to serve on 0.0.0.0:0 without authentication"), "{said}");
}

/// `sessiond hash-key ARGS` with `key` on standard input: whether it
/// succeeded, and what it printed on standard output.
fn hash_key_command(args: &[&str], key: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("hash-key")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sessiond starts");
    child.stdin.take().expect("piped").write_all(key.as_bytes()).expect("the key is written");
    let output = child.wait_with_output().expect("sessiond ends");
    (output.status.success(), String::from_utf8(output.stdout).expect("text").trim().to_owned())
}

#[test]
fn hash_key_refuses_a_weak_key_unless_told_it_is_a_migration() {
    let (refused, printed) = hash_key_command(&[], "hunter2");
    assert!(!refused && printed.is_empty(), "a weak key is not hashed: {printed}");
    let (accepted, printed) = hash_key_command(&["--allow-weak"], "hunter2");
    assert!(accepted);
    assert_eq!(printed, hash_key("hunter2"));
    let (strong, _) = generate_key();
    let (accepted, printed) = hash_key_command(&[], &strong);
    assert!(accepted);
    assert_eq!(printed, hash_key(&strong));
}

#[tokio::test]
async fn a_key_configured_as_an_argon2_hash_authenticates_and_a_wrong_one_does_not() {
    let (accepted, hash) = hash_key_command(&["--argon2", "--allow-weak"], "a-migrated-legacy-key");
    assert!(accepted && hash.starts_with("$argon2id$v=19$m="), "{hash}");
    let keys = format!("keys: [{{name: legacy, tenant: acme, role: service, hash: '{hash}'}}]");
    let mut app = TestApp::spawn_with_keys(&keys).await;
    let request =
        || pb::CreateSessionRequest { kind: Kind::WebUser.into(), user_id: "alice".into(), ..Default::default() };

    let wrong = failure(app.sessions.create_session(with_key(request(), "a-migrated-legacy-kez")).await);
    assert_eq!(wrong.code(), Code::Unauthenticated);
    for _ in 0..2 {
        let created = app.sessions.create_session(with_key(request(), "a-migrated-legacy-key")).await;
        assert!(created.is_ok(), "the key verifies, first against argon2 and then from memory: {created:?}");
    }
    let wrong = failure(app.sessions.create_session(with_key(request(), "a-migrated-legacy-kez")).await);
    assert_eq!(wrong.code(), Code::Unauthenticated, "still refused once the right key was seen");
}

#[tokio::test]
async fn authenticate_answers_the_tenant_and_never_another_tenants_session() {
    let mut t = two_tenants().await;
    let acme = t.acme.clone();
    let token = create(&mut t, &acme, "alice").await.token;
    let request = || pb::AuthenticateRequest { token: token.clone(), ..Default::default() };

    let answer = t.app.sessions.authenticate(with_key(request(), &t.acme)).await.expect("own tenant").into_inner();
    assert_eq!((answer.tenant.as_str(), answer.user_id.as_str()), ("acme", "alice"));
    let foreign = failure(t.app.sessions.authenticate(with_key(request(), &t.globex)).await);
    assert_eq!(foreign.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&foreign).as_deref(), Some("SESSION_NOT_FOUND"), "as if it did not exist");
}

#[tokio::test]
async fn a_service_key_does_only_what_its_entry_allows_beyond_its_role() {
    let (bare, trusted, admin) = (generate_key().0, generate_key().0, generate_key().0);
    let keys = format!(
        "keys:\n  - {{name: bare, tenant: acme, role: service, hash: \"{}\"}}\n  - {{name: ops-svc, tenant: acme, role: service, hash: \"{}\", allow: [trusted_sessions, change_privileges, session_ids]}}\n  - {{name: ops, tenant: acme, role: admin, hash: \"{}\"}}\n",
        hash_key(&bare),
        hash_key(&trusted),
        hash_key(&admin)
    );
    let mut app = crate::helpers::TestApp::spawn_with_keys(&keys).await;
    let refused_for = |status: tonic::Status, permission: &str| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(error_reason(&status).as_deref(), Some("PERMISSION_REQUIRED"));
        assert_eq!(crate::helpers::error_metadata(&status, "permission").as_deref(), Some(permission));
    };
    let trusted_create =
        || pb::CreateSessionRequest { kind: Kind::Standalone.into(), trusted: true, ..Default::default() };

    // A bare service key: a user's session with roles, by token, is its job.
    let login = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        roles: vec!["Manager".into()],
        ..Default::default()
    };
    let created = app.sessions.create_session(with_key(login, &bare)).await.expect("a login").into_inner();
    let id = created.session.as_ref().expect("a session").session_id.clone();
    let get = |session| pb::GetSessionRequest { session };
    app.sessions.get_session(with_key(get(by_token(&created.token)), &bare)).await.expect("by token");
    // ...but not trusted sessions, privilege changes or naming by id.
    refused_for(failure(app.sessions.create_session(with_key(trusted_create(), &bare)).await), "trusted_sessions");
    let set = || pb::SetPrivilegesRequest {
        session: by_token(&created.token),
        privileges: vec!["admin".into()],
        roles: vec![],
    };
    refused_for(failure(app.privileges.set_privileges(with_key(set(), &bare)).await), "change_privileges");
    let promote = pb::PromoteRequest {
        session: by_token(&created.token),
        privilege: "admin".into(),
        duration: crate::helpers::seconds(60),
    };
    refused_for(failure(app.privileges.promote(with_key(promote, &bare)).await), "change_privileges");
    let clear = pb::ClearPrivilegesRequest { session: by_token(&created.token) };
    refused_for(failure(app.privileges.clear_privileges(with_key(clear, &bare)).await), "change_privileges");
    refused_for(failure(app.sessions.get_session(with_key(get(by_id(&id)), &bare)).await), "session_ids");
    let revoke = pb::RevokeSessionsRequest { session_ids: vec![id.clone()], ..Default::default() };
    refused_for(failure(app.sessions.revoke_sessions(with_key(revoke.clone(), &bare)).await), "session_ids");
    let watch = pb::WatchSessionsRequest { session_id: id.clone(), ..Default::default() };
    refused_for(failure(app.sessions.watch_sessions(with_key(watch, &bare)).await), "session_ids");
    let held = app
        .privileges
        .has_privilege(with_key(
            pb::HasPrivilegeRequest { session: by_token(&created.token), privilege: "admin".into() },
            &bare,
        ))
        .await
        .expect("checking is fine")
        .into_inner();
    assert!(!held.granted, "the refused changes changed nothing");

    // A service key allowed all three, and an admin key, may.
    for key in [&trusted, &admin] {
        app.sessions.create_session(with_key(trusted_create(), key)).await.expect("a trusted session");
        app.privileges.set_privileges(with_key(set(), key)).await.expect("a privilege change");
        app.sessions.get_session(with_key(get(by_id(&id)), key)).await.expect("by id");
    }
    app.sessions.revoke_sessions(with_key(revoke, &trusted)).await.expect("revoking by id");
}

#[tokio::test]
async fn any_valid_key_reads_the_server_info_and_no_key_does_not() {
    let t = two_tenants().await;
    let mut server = pb::server_service_client::ServerServiceClient::new(t.app.channel.clone());
    for key in [&t.acme, &t.acme_admin, &t.globex] {
        let info = server.get_server_info(with_key(pb::GetServerInfoRequest {}, key)).await.expect("answered");
        assert_eq!(info.into_inner().version, env!("CARGO_PKG_VERSION"));
    }
    let missing = failure(server.get_server_info(pb::GetServerInfoRequest {}).await);
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = failure(server.get_server_info(with_key(pb::GetServerInfoRequest {}, "sdk_not-a-key")).await);
    assert_eq!(error_reason(&wrong).as_deref(), Some("API_KEY_INVALID"));
}
