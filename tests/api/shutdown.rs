//! Graceful shutdown of the real binary on SIGTERM: every activity held in
//! memory reaches the store, however many sessions were touched, and calls
//! still running when the drain timeout ends are cut rather than waited for.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::store::Store;
use tonic::transport::Channel;

use crate::helpers::{PATIENCE, by_token, entry, on_postgres, seconds};
use crate::postgres_support::{TestDatabase, fresh_database};

/// Sessions touched before the stop: more than one store batch of activity.
const TOUCHED: usize = 4_800;

/// The binary on a data directory (or the test database), with `args`.
struct Running {
    child: Child,
    address: String,
}

fn start(data_dir: &std::path::Path, database: Option<&TestDatabase>, args: &[&str]) -> Running {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "info"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(database) = database {
        command.args(["--database-url", &database.url]);
    }
    Running { child: command.spawn().expect("sessiond starts"), address: format!("http://127.0.0.1:{port}") }
}

impl Running {
    async fn client(&self) -> SessionServiceClient<Channel> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match Channel::from_shared(self.address.clone()).expect("a valid address").connect().await {
                Ok(channel) => return SessionServiceClient::new(channel),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => panic!("sessiond never listened: {err}"),
            }
        }
    }

    /// SIGTERM; answers how long sessiond took to exit and its log.
    fn terminate(mut self) -> (Duration, std::process::ExitStatus, String) {
        let sent = Instant::now();
        let killed = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(killed.expect("kill runs").success(), "SIGTERM was delivered");
        // The log is drained while waiting, so a full pipe cannot stall it.
        let stderr = self.child.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let deadline = sent + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("the child is reaped");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = sent.elapsed();
        (took, status, reader.join().expect("the log is read"))
    }
}

/// The store sessiond used, opened once it has exited.
async fn store_of(data_dir: &std::path::Path, database: Option<&TestDatabase>) -> Arc<dyn Store> {
    match database {
        Some(database) => {
            Arc::new(sessiond::store::postgres::PgStore::connect(database.settings()).await.expect("the store opens"))
        }
        None => Arc::new(sessiond::store::sqlite::SqliteStore::open_in(data_dir).expect("the store opens")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_the_activity_of_every_touched_session() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let database = if on_postgres() { Some(fresh_database().await) } else { None };
    // Activity is written only once an hour old: everything touched below
    // is held in memory until the stop.
    let running = start(data.path(), database.as_ref(), &["--activity-flush", "1h"]);
    let client = running.client().await;

    let workers: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut sessions = Vec::new();
                for _ in 0..TOUCHED / 8 {
                    let created = client
                        .create_session(pb::CreateSessionRequest {
                            kind: pb::SessionKind::WebUser.into(),
                            idle_timeout: seconds(8 * 3600),
                            ..Default::default()
                        })
                        .await
                        .expect("created")
                        .into_inner();
                    let session = created.session.expect("a session");
                    sessions.push((session.session_id, created.token));
                }
                let mut touched = Vec::new();
                for (id, token) in sessions {
                    let answer = client
                        .touch_session(pb::TouchSessionRequest { session: by_token(&token) })
                        .await
                        .expect("open")
                        .into_inner();
                    touched.push((id, answer));
                }
                touched
            })
        })
        .collect();
    let mut touched = Vec::new();
    for worker in workers {
        touched.extend(worker.await.expect("the worker does not panic"));
    }
    drop(client);

    let (_, status, log) = running.terminate();
    assert!(status.success(), "sessiond stopped cleanly: {log}");
    assert!(log.contains(&format!("flushed={TOUCHED}")), "every touched session was flushed: {log}");
    let store = store_of(data.path(), database.as_ref()).await;
    for (id, touch) in touched {
        let id = sessiond::domain::SessionId::parse(&id, "session_id").expect("a valid id");
        let stored = store.session_by_id(&id).await.expect("readable").expect("kept");
        let expires = touch.expires_at.expect("an idle timeout");
        let expires_ms = expires.seconds * 1_000 + i64::from(expires.nanos) / 1_000_000;
        let idle_ms = 8 * 3600 * 1_000;
        // The answer's expiry counts from the call's own reading of the
        // clock, a moment after the activity it recorded (a long moment on
        // a loaded machine, where the call's thread may wait its turn).
        let touched_at = expires_ms - idle_ms;
        let written = stored.last_active_at.0;
        assert!((touched_at - 1_000..=touched_at).contains(&written), "the touch of {id} was written: {written}");
        assert!(written > stored.created_at.0 || touched_at - stored.created_at.0 < 2, "the touch of {id} was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_calls_still_running_at_the_drain_timeout() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let database = if on_postgres() { Some(fresh_database().await) } else { None };
    let running = start(data.path(), database.as_ref(), &["--drain-timeout", "1s"]);
    let channel = Channel::from_shared(running.address.clone()).expect("a valid address");
    let mut client = running.client().await;
    let created = client
        .create_session(pb::CreateSessionRequest { kind: pb::SessionKind::WebUser.into(), ..Default::default() })
        .await
        .expect("created")
        .into_inner();
    // A StreamLog whose client never ends it: a call that would run forever.
    let (messages, stream) = tokio::sync::mpsc::channel(1);
    let mut logs = pb::log_service_client::LogServiceClient::new(channel.connect().await.expect("connects"));
    let call = tokio::spawn(async move { logs.stream_log(tokio_stream::wrappers::ReceiverStream::new(stream)).await });
    messages
        .send(pb::StreamLogRequest {
            session: by_token(&created.token),
            entries: vec![entry(pb::LogLevel::Info, "streaming")],
            ..Default::default()
        })
        .await
        .expect("the stream takes a message");
    // The stream is running on the server once its first message is
    // committed: a web user's entries are readable while it is open.
    let session_id = created.session.as_ref().expect("a session").session_id.clone();
    let mut queries = pb::log_service_client::LogServiceClient::new(channel.connect().await.expect("connects"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let query = pb::QueryLogsRequest { session_id: session_id.clone(), ..Default::default() };
        let page = queries.query_logs(query).await.expect("logs are queryable").into_inner();
        if !page.records.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the stream's first message was never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (took, status, log) = running.terminate();
    assert!(status.success(), "sessiond stopped cleanly: {log}");
    assert!(log.contains("calls still running after the drain timeout were cut"), "{log}");
    assert!(took < PATIENCE, "sessiond exited without waiting for the stream to end ({took:?})");
    let answer = call.await.expect("the call task does not panic");
    assert!(answer.is_err(), "the cut stream is answered an error, not success: {answer:?}");
    drop(messages);
}

#[tokio::test]
async fn sigterm_while_starting_up_stops_sessiond_cleanly() {
    if on_postgres() {
        return; // the same start-up either way; the wait below is made up
    }
    // A "Postgres" that accepts connections and never answers: start-up
    // waits on it, surely past the point where signals are handled.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("postgres://sessiond@{}/sessiond", silent.local_addr().expect("an address"));
    let data = tempfile::tempdir().expect("a temporary directory");
    let running = start(data.path(), None, &["--database-url", &url]);
    let (held, _) =
        tokio::task::spawn_blocking(move || silent.accept()).await.expect("joined").expect("sessiond connects");

    let (took, status, log) = running.terminate();
    drop(held);
    assert!(status.success(), "SIGTERM during start-up ends sessiond cleanly, not by the signal: {status:?}\n{log}");
    assert!(took < PATIENCE, "{took:?}");
    assert!(log.contains("stopped while starting up"), "{log}");
}
