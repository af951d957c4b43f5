//! The admin CLI (`sessiond sessions|logs|events|messages|health|version`): the
//! real binary, run as a child process against a real sessiond, read
//! through its standard output, standard error and exit code.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;

use crate::helpers::{PATIENCE, TestApp, by_id, entry};

const SESSIOND: &str = env!("CARGO_BIN_EXE_sessiond");

/// The CLI's exit codes (README, "Operating sessiond").
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;
const UNAVAILABLE: i32 = 4;
const DENIED: i32 = 5;
const REFUSED: i32 = 6;

/// `sessiond ARGS --addr ADDRESS` with `env` added to an environment
/// holding none of the CLI's own variables.
fn command(address: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(SESSIOND);
    command.args(args).args(["--addr", address]);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SESSIOND_CLI_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command
}

/// Runs the CLI to its end, off the test's runtime, which serves the app.
async fn run(address: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command(address, args, env);
    tokio::task::spawn_blocking(move || command.output().expect("the CLI runs"))
        .await
        .expect("the CLI's runner does not panic")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 errors")
}

/// Each line of standard output as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    stdout(output).lines().map(|line| serde_json::from_str(line).expect("every line is one JSON object")).collect()
}

/// Where each column of a table's header starts.
fn column_starts(header: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' {
            starts.push(i);
        }
    }
    starts
}

/// A CLI process left running (a tail, a watch), its standard output read
/// line by line; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(address: &str, args: &[&str]) -> Self {
        let mut child = command(address, args, &[]).stdout(Stdio::piped()).spawn().expect("the CLI starts");
        let out = child.stdout.take().expect("standard output is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, waiting up to PATIENCE without holding the runtime.
    async fn next_line(&mut self) -> String {
        tokio::task::block_in_place(|| self.lines.recv_timeout(PATIENCE)).expect("a line within PATIENCE")
    }

    /// Waits up to PATIENCE for standard output to close with no further
    /// line, then for the process to exit; answers its exit code.
    async fn exit_code(&mut self) -> Option<i32> {
        tokio::task::block_in_place(|| {
            match self.lines.recv_timeout(PATIENCE) {
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
                Ok(line) => panic!("no further line, not {line:?}"),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the CLI did not end within PATIENCE"),
            }
            self.child.wait().expect("the CLI is waited for").code()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sessions_are_listed_as_an_aligned_table_or_as_json_lines() {
    let mut app = TestApp::spawn().await;
    let alice = app.create(Kind::WebUser, "alice").await.session.unwrap().session_id;
    let bob = app.create(Kind::MethodCall, "bob").await.session.unwrap().session_id;

    let table = run(&app.address, &["sessions", "list"], &[]).await;
    assert_eq!(table.status.code(), Some(0), "stderr: {}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {text}");
    assert!(lines[0].starts_with("SESSION_ID"), "{text}");
    let starts = column_starts(lines[0]);
    assert!(starts.len() >= 5, "{text}");
    for row in &lines[1..] {
        // Every value starts where its column's header does.
        for &start in &starts[1..] {
            assert_ne!(row.as_bytes()[start], b' ', "misaligned row {row:?} in\n{text}");
            assert_eq!(row.as_bytes()[start - 1], b' ', "misaligned row {row:?} in\n{text}");
        }
    }

    let json = json_lines(&run(&app.address, &["sessions", "list", "--output", "json", "--user", "alice"], &[]).await);
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["session_id"], alice.as_str());
    assert_eq!(json[0]["kind"], "web_user");
    assert_eq!(json[0]["state"], "open");

    let json = json_lines(&run(&app.address, &["sessions", "list", "-o", "json", "--kind", "method_call"], &[]).await);
    assert_eq!(json.iter().map(|s| s["session_id"].as_str().unwrap()).collect::<Vec<_>>(), [bob.as_str()]);
}

#[tokio::test]
async fn a_dry_run_counts_what_revoke_would_end_and_ends_nothing() {
    let mut app = TestApp::spawn().await;
    let mut carol = Vec::new();
    for _ in 0..3 {
        carol.push(app.create(Kind::WebUser, "carol").await.session.unwrap().session_id);
    }
    app.create(Kind::WebUser, "dave").await;

    let dry = json_lines(
        &run(&app.address, &["sessions", "revoke", "--user", "carol", "--dry-run", "-o", "json"], &[]).await,
    );
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(dry[0]["matching"], 3);
    for id in &carol {
        let session = app.sessions.get_session(pb::GetSessionRequest { session: by_id(id) }).await.unwrap();
        assert_eq!(session.into_inner().session.unwrap().state, i32::from(pb::SessionState::Open));
    }
    let table = run(&app.address, &["sessions", "revoke", "--user", "carol", "--dry-run"], &[]).await;
    assert!(stdout(&table).ends_with("dry run: 3 open sessions would be revoked\n"), "{}", stdout(&table));

    let revoked = json_lines(&run(&app.address, &["sessions", "revoke", "--user", "carol", "-o", "json"], &[]).await);
    assert_eq!(revoked[0]["revoked"], 3);
    let mut ids: Vec<&str> =
        revoked[0]["session_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    ids.sort();
    carol.sort();
    assert_eq!(ids, carol);
    let again = json_lines(
        &run(&app.address, &["sessions", "revoke", "--user", "carol", "--dry-run", "-o", "json"], &[]).await,
    );
    assert_eq!(again[0]["matching"], 0);
    let dave = json_lines(
        &run(&app.address, &["sessions", "list", "--user", "dave", "--state", "open", "-o", "json"], &[]).await,
    );
    assert_eq!(dave.len(), 1, "another user's session is untouched");

    let no_filter = run(&app.address, &["sessions", "revoke"], &[]).await;
    assert_eq!(no_filter.status.code(), Some(USAGE));
}

#[tokio::test]
async fn show_prints_one_session_and_an_unknown_one_exits_not_found() {
    let mut app = TestApp::spawn().await;
    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "erin".into(),
        roles: vec!["Manager".into()],
        ..Default::default()
    };
    let id = app.create_with(request).await.session.unwrap().session_id;

    let shown = json_lines(&run(&app.address, &["sessions", "show", &id, "-o", "json"], &[]).await);
    assert_eq!(shown[0]["session_id"], id.as_str());
    assert_eq!(shown[0]["roles"], serde_json::json!(["manager"]));
    let table = run(&app.address, &["sessions", "show", &id], &[]).await;
    assert!(
        stdout(&table).lines().any(|line| line.starts_with("user_id") && line.ends_with(" erin")),
        "{}",
        stdout(&table)
    );

    let unknown = run(&app.address, &["sessions", "show", &"0".repeat(32)], &[]).await;
    assert_eq!(unknown.status.code(), Some(NOT_FOUND), "stderr: {}", stderr(&unknown));
    assert!(stdout(&unknown).is_empty());
}

#[tokio::test]
async fn the_api_key_comes_from_the_environment_or_a_file_and_never_from_a_flag() {
    let admin = generate_key().0;
    let service = generate_key().0;
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "keys:\n  - {{name: ops, tenant: acme, role: admin, hash: \"{}\"}}\n  - {{name: svc, tenant: acme, role: service, hash: \"{}\"}}\n",
        hash_key(&admin),
        hash_key(&service)
    );
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, format!("{admin}\n")).unwrap();
    let app = TestApp::spawn_with_keys(&keys).await;
    let list = ["sessions", "list", "-o", "json"];

    let without = run(&app.address, &list, &[]).await;
    assert_eq!(without.status.code(), Some(DENIED), "stderr: {}", stderr(&without));
    assert!(stderr(&without).contains("UNAUTHENTICATED"), "{}", stderr(&without));

    let from_env = run(&app.address, &list, &[("SESSIOND_CLI_API_KEY", &admin)]).await;
    assert_eq!(from_env.status.code(), Some(0), "stderr: {}", stderr(&from_env));

    let file = key_file.to_str().unwrap();
    let from_file = run(&app.address, &[&list[..], &["--api-key-file", file]].concat(), &[]).await;
    assert_eq!(from_file.status.code(), Some(0), "stderr: {}", stderr(&from_file));
    let from_file_env = run(&app.address, &list, &[("SESSIOND_CLI_API_KEY_FILE", file)]).await;
    assert_eq!(from_file_env.status.code(), Some(0), "stderr: {}", stderr(&from_file_env));

    let twice =
        run(&app.address, &[&list[..], &["--api-key-file", file]].concat(), &[("SESSIOND_CLI_API_KEY", &admin)]).await;
    assert_eq!(twice.status.code(), Some(USAGE), "stderr: {}", stderr(&twice));

    let as_service = run(&app.address, &list, &[("SESSIOND_CLI_API_KEY", &service)]).await;
    assert_eq!(as_service.status.code(), Some(DENIED), "stderr: {}", stderr(&as_service));
    assert!(stderr(&as_service).contains("PERMISSION_DENIED"), "{}", stderr(&as_service));
    assert!(stderr(&as_service).contains("ADMIN_ROLE_REQUIRED"), "{}", stderr(&as_service));

    let as_flag = run(&app.address, &[&list[..], &["--api-key", &admin]].concat(), &[]).await;
    assert_eq!(as_flag.status.code(), Some(USAGE), "no flag takes a key");
    for output in [&without, &from_env, &from_file, &twice, &as_service] {
        assert!(!stderr(output).contains(&admin) && !stdout(output).contains(&admin), "the key is never printed");
    }
}

#[tokio::test]
async fn input_the_api_refuses_is_refused_with_the_apis_message_and_fields() {
    let mut app = TestApp::spawn().await;
    let long_user = "u".repeat(2000);
    let api = app
        .sessions
        .list_sessions(pb::ListSessionsRequest { user_id: long_user.clone(), ..Default::default() })
        .await
        .expect_err("an oversized user id is refused");

    let output = run(&app.address, &["sessions", "list", "--user", &long_user], &[]).await;
    assert_eq!(output.status.code(), Some(USAGE));
    let errors = stderr(&output);
    assert!(errors.starts_with(&format!("sessiond: INVALID_ARGUMENT: {}", api.message())), "{errors}");
    assert!(errors.lines().any(|line| line.trim_start().starts_with("user_id: ")), "{errors}");
    assert!(stdout(&output).is_empty());

    let kind = run(&app.address, &["sessions", "list", "--kind", "nonsense"], &[]).await;
    assert_eq!(kind.status.code(), Some(USAGE));
}

#[tokio::test]
async fn health_and_version_answer_and_an_unreachable_server_exits_unavailable() {
    let app = TestApp::spawn().await;
    let health = run(&app.address, &["health"], &[]).await;
    assert_eq!(health.status.code(), Some(0), "stderr: {}", stderr(&health));
    assert!(stdout(&health).ends_with(": SERVING\n"));
    let json = json_lines(&run(&app.address, &["health", "-o", "json"], &[]).await);
    assert_eq!(json[0]["status"], "SERVING");

    // The client's version and the server's (GetServerInfo).
    let version = json_lines(&run(&app.address, &["version", "-o", "json"], &[]).await);
    assert_eq!(version[0]["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version[0]["version"], env!("CARGO_PKG_VERSION"));
    let server = &version[0]["server"];
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    let store = if crate::helpers::on_postgres() { "postgres" } else { "embedded" };
    assert_eq!(server["store"], store);
    assert!(server["schema_version"].as_u64().is_some_and(|v| v > 0), "{server}");
    assert!(server["started_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{server}");
    let table = run(&app.address, &["version"], &[]).await;
    assert_eq!(table.status.code(), Some(0), "stderr: {}", stderr(&table));
    let lines: Vec<String> = stdout(&table).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], format!("client: sessiond {}", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with(&format!("server: sessiond {} (", env!("CARGO_PKG_VERSION"))), "{lines:?}");
    assert!(lines[1].contains(&format!("store {store} (schema ")), "{lines:?}");
    // --client asks no server, so it answers with none listening.
    let client = Command::new(SESSIOND).args(["version", "--client", "-o", "json"]).output().unwrap();
    assert_eq!(client.status.code(), Some(0));
    let client: Value = serde_json::from_slice(&client.stdout).unwrap();
    assert_eq!(client["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(client.get("server").is_none(), "{client}");

    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = run(&format!("127.0.0.1:{port}"), &["health"], &[]).await;
    assert_eq!(gone.status.code(), Some(UNAVAILABLE), "stderr: {}", stderr(&gone));
    let gone = run(&format!("127.0.0.1:{port}"), &["sessions", "list"], &[]).await;
    assert_eq!(gone.status.code(), Some(UNAVAILABLE), "stderr: {}", stderr(&gone));
    // The client's version still comes, then the server's absence.
    let gone = run(&format!("127.0.0.1:{port}"), &["version"], &[]).await;
    assert_eq!(gone.status.code(), Some(UNAVAILABLE), "stderr: {}", stderr(&gone));
    assert_eq!(stdout(&gone), format!("client: sessiond {}\n", env!("CARGO_PKG_VERSION")));
    assert!(stderr(&gone).contains("cannot connect"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_watch_prints_each_event_as_it_happens() {
    let mut app = TestApp::spawn().await;
    let first = app.create(Kind::WebUser, "frank").await;
    let mut watch = Running::start(&app.address, &["events", "watch", "--after", "0", "-o", "json"]);
    let line: Value = serde_json::from_str(&watch.next_line().await).unwrap();
    assert_eq!(line["type"], "created");
    assert_eq!(line["session_id"], first.session.unwrap().session_id.as_str());
    assert_eq!(line["sequence"], first.sequence);

    // Created while the watch runs.
    let second = app.create(Kind::WebUser, "grace").await;
    let line: Value = serde_json::from_str(&watch.next_line().await).unwrap();
    assert_eq!(line["session_id"], second.session.unwrap().session_id.as_str());
    assert_eq!(line["user_id"], "grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_prints_an_entry_logged_after_it_started() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_all = true).await;
    let mut tail = Running::start(&app.address, &["logs", "tail"]);
    // The header is printed once the follow has started.
    let header = tail.next_line().await;
    assert!(header.starts_with("LOGGED_AT"), "{header}");

    let created = app.create(Kind::WebCall, "heidi").await;
    let message = "payment <b>refused</b>\nretrying";
    app.log(&created.token, vec![entry(pb::LogLevel::Error, message)]).await;
    app.close(&created.token, "").await;

    let line = tail.next_line().await;
    assert!(line.contains(" error "), "{line}");
    assert!(line.contains(&created.session.unwrap().session_id), "{line}");
    assert!(line.ends_with("payment <b>refused</b>\\nretrying"), "control characters escaped: {line}");
}

#[tokio::test]
async fn logs_query_narrows_to_an_endpoint_and_prints_each_entrys_endpoint() {
    let mut app = TestApp::spawn_with(|s| s.session_logs.keep_all = true).await;
    for endpoint in ["checkout", "health"] {
        let request = pb::CreateSessionRequest {
            kind: Kind::WebCall.into(),
            user_id: "ivan".into(),
            labels: Some(pb::SessionLabels { endpoint: endpoint.into(), ..Default::default() }),
            ..Default::default()
        };
        let created = app.sessions.create_session(request).await.expect("created").into_inner();
        app.log(&created.token, vec![entry(pb::LogLevel::Info, &format!("at {endpoint}"))]).await;
        app.close(&created.token, "").await;
    }
    let json = json_lines(&run(&app.address, &["logs", "query", "--endpoint", "checkout", "-o", "json"], &[]).await);
    let found: Vec<(&str, &str)> =
        json.iter().map(|l| (l["message"].as_str().unwrap(), l["endpoint"].as_str().unwrap())).collect();
    assert_eq!(found, [("at checkout", "checkout")]);
    let table = run(&app.address, &["logs", "query", "--user", "ivan"], &[]).await;
    let text = stdout(&table);
    let mut lines = text.lines();
    assert!(lines.next().is_some_and(|header| header.contains(" ENDPOINT ")), "{text}");
    assert!(lines.all(|line| line.contains(" checkout ") || line.contains(" health ")), "{text}");
}

#[tokio::test]
async fn the_cli_speaks_mutual_tls_with_a_ca_a_client_certificate_and_a_server_name() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, client) = (leaf("sessiond.internal"), leaf("ops"));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut settings = sessiond::settings::Settings::for_tests("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    settings.auth.tls_cert = Some(write("server.crt", &server.0));
    settings.auth.tls_key = Some(write("server.key", &server.1));
    // No keys file: the client certificate is the only way in.
    settings.auth.tls_client_ca = Some(write("ca.crt", &ca.pem()));
    let app =
        sessiond::startup::Application::build_with_clock(settings, std::sync::Arc::new(sessiond::clock::SystemClock))
            .await
            .expect("the app builds");
    let address = format!("https://{}", app.local_addr());
    let server_task = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (ca_file, cert_file, key_file) =
        (write("ca.pem", &ca.pem()), write("client.crt", &client.0), write("client.key", &client.1));
    let tls = [
        "--ca-cert",
        ca_file.to_str().unwrap(),
        "--client-cert",
        cert_file.to_str().unwrap(),
        "--client-key",
        key_file.to_str().unwrap(),
        "--server-name",
        "sessiond.internal",
    ];

    let listed = run(&address, &[&["sessions", "list", "-o", "json"][..], &tls].concat(), &[]).await;
    assert_eq!(listed.status.code(), Some(0), "stderr: {}", stderr(&listed));

    // Without the client certificate the handshake is refused.
    let without = run(&address, &[&["sessions", "list"][..], &tls[..2], &tls[6..]].concat(), &[]).await;
    assert_eq!(without.status.code(), Some(UNAVAILABLE), "stderr: {}", stderr(&without));
    // A name the certificate does not hold is refused by the CLI.
    let wrong_name = [&tls[..6], &["--server-name", "elsewhere"][..]].concat();
    let wrong = run(&address, &[&["health"][..], &wrong_name].concat(), &[]).await;
    assert_eq!(wrong.status.code(), Some(UNAVAILABLE), "stderr: {}", stderr(&wrong));
    // TLS without a CA to trust is a usage error.
    let no_ca = run(&address, &["health"], &[]).await;
    assert_eq!(no_ca.status.code(), Some(USAGE), "stderr: {}", stderr(&no_ca));
    server_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_follow_prints_each_message_posted_by_messages_post() {
    let app = TestApp::spawn().await;
    let mut follow = Running::start(&app.address, &["messages", "follow", "chat/room-42", "chat/other", "-o", "json"]);
    // The first line says the subscription is in place.
    let subscribed: Value = serde_json::from_str(&follow.next_line().await).unwrap();
    assert_eq!(subscribed, serde_json::json!({"item": "subscribed", "channels": ["chat/room-42", "chat/other"]}));

    let posted = run(
        &app.address,
        &[
            "messages",
            "post",
            "chat/room-42",
            r#"{"from": "alice", "text": "hi\nthere", "n": 3}"#,
            "--type",
            "chat.Line",
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(json_lines(&posted), [serde_json::json!({"sequence": 1, "local_deliveries": 1})]);
    let line: Value = serde_json::from_str(&follow.next_line().await).unwrap();
    assert_eq!(
        (&line["item"], &line["channel"], &line["sequence"], &line["scope"], &line["type_name"]),
        (&"message".into(), &"chat/room-42".into(), &1.into(), &"global".into(), &"chat.Line".into())
    );
    assert_eq!(line["payload"], serde_json::json!({"from": "alice", "text": "hi\nthere", "n": 3}));
    assert!(line["posted_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{line}");

    // A local message is not numbered; the table prints it as it comes.
    let local = run(&app.address, &["messages", "post", "chat/other", "null", "--scope", "local"], &[]).await;
    assert_eq!(local.status.code(), Some(0), "stderr: {}", stderr(&local));
    assert_eq!(
        stdout(&local).lines().nth(1).map(str::split_whitespace).map(Iterator::collect::<Vec<_>>),
        Some(vec!["0", "1"])
    );
    let line: Value = serde_json::from_str(&follow.next_line().await).unwrap();
    assert_eq!((&line["sequence"], &line["scope"], &line["payload"]), (&0.into(), &"local".into(), &Value::Null));

    // Resuming replays the kept messages in a table, control characters escaped.
    let mut table = Running::start(&app.address, &["messages", "follow", "chat/room-42", "--after", "0"]);
    let header = table.next_line().await;
    assert!(header.starts_with("CHANNEL") && header.contains("PAYLOAD"), "{header}");
    let row = table.next_line().await;
    assert!(row.starts_with("chat/room-42"), "{row}");
    assert!(row.contains(" chat.Line "), "{row}");
    assert!(row.ends_with(r#"{"from":"alice","n":3,"text":"hi\nthere"}"#), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_follow_of_a_session_channel_ends_with_the_session() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "ivan").await;
    let id = created.session.clone().unwrap().session_id;
    let channel = format!("session:{id}");
    let mut follow = Running::start(&app.address, &["messages", "follow", &channel, "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&follow.next_line().await).unwrap()["item"], "subscribed");

    app.close(&created.token, "").await;
    let line: Value = serde_json::from_str(&follow.next_line().await).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"item": "session_ended", "channel": channel, "session_id": id, "end_reason": "closed", "final": true})
    );
    assert_eq!(follow.exit_code().await, Some(0), "the stream ended with OK");

    // The ended session's channel is refused, as the API refuses it.
    let ended = run(&app.address, &["messages", "post", &channel, "1"], &[]).await;
    assert_eq!(ended.status.code(), Some(REFUSED), "stderr: {}", stderr(&ended));
    assert!(stderr(&ended).contains("(SESSION_CLOSED)"), "{}", stderr(&ended));
}

#[tokio::test]
async fn messages_refusals_exit_with_the_codes_of_the_other_commands() {
    let app = TestApp::spawn().await;
    let secret_payload = r#"{"card": "4111 1111"#;
    let not_json = run(&app.address, &["messages", "post", "chat/room", secret_payload], &[]).await;
    assert_eq!(not_json.status.code(), Some(USAGE));
    assert!(stderr(&not_json).contains("not valid JSON (line 1, column"), "{}", stderr(&not_json));
    assert!(!stderr(&not_json).contains("4111"), "the payload is never echoed");

    let unknown_kind = run(&app.address, &["messages", "post", "robot:7", "1"], &[]).await;
    assert_eq!(unknown_kind.status.code(), Some(USAGE));
    assert!(
        stderr(&unknown_kind).lines().any(|line| line.trim_start().starts_with("channel: ")),
        "{}",
        stderr(&unknown_kind)
    );

    let no_session = run(&app.address, &["messages", "follow", &format!("session:{}", "0".repeat(32))], &[]).await;
    assert_eq!(no_session.status.code(), Some(NOT_FOUND), "stderr: {}", stderr(&no_session));

    assert_eq!(run(&app.address, &["messages", "post", "chat/room", "1"], &[]).await.status.code(), Some(0));
    let ahead = run(&app.address, &["messages", "follow", "chat/room", "--after", "5"], &[]).await;
    assert_eq!(ahead.status.code(), Some(USAGE));
    assert!(stderr(&ahead).starts_with("sessiond: OUT_OF_RANGE: "), "{}", stderr(&ahead));
    assert!(stderr(&ahead).contains("(CURSOR_AHEAD)"), "{}", stderr(&ahead));
    assert!(stdout(&ahead).is_empty());

    let scope = run(&app.address, &["messages", "post", "chat/room", "1", "--scope", "everywhere"], &[]).await;
    assert_eq!(scope.status.code(), Some(USAGE));
}
