//! `sessiond probe`, the exec probe and image HEALTHCHECK: the real binary
//! asked about a real sessiond process, serving plaintext or TLS, frozen
//! with SIGSTOP, and gone.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{PATIENCE, ROLES_FILE};

const SESSIOND: &str = env!("CARGO_BIN_EXE_sessiond");

/// A sessiond process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts sessiond, serving TLS with `tls`, and waits until an
    /// independent health client (tonic's, trusting the certificate) hears
    /// SERVING.
    async fn start(tls: Option<&Tls>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let mut command = Command::new(SESSIOND);
        command
            .args(["--listen", &format!("127.0.0.1:{port}"), "--roles-file", ROLES_FILE])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sessiond.log")).expect("a log file"));
        if let Some(tls) = tls {
            command.args(tls.server_args(dir.path()));
        }
        let child = command.spawn().expect("sessiond starts");
        let server = Server { child, port, dir };
        server.wait_until_serving(tls).await;
        server
    }

    async fn wait_until_serving(&self, tls: Option<&Tls>) {
        let (scheme, config) = match tls {
            Some(tls) => ("https", Some(tls.client_config())),
            None => ("http", None),
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://localhost:{}", self.port))
            .expect("a valid URI")
            .connect_timeout(Duration::from_secs(1));
        if let Some(config) = config {
            endpoint = endpoint.tls_config(config).expect("a valid TLS configuration");
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(channel) = endpoint.connect().await {
                let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
                if answer.is_ok_and(|a| a.into_inner().status == 1) {
                    return;
                }
            }
            let log = std::fs::read_to_string(self.dir.path().join("sessiond.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "sessiond never served: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`-STOP`, `-CONT`) with kill(1); false when the
    /// process is gone. `-STOP` returns once every thread is stopped.
    fn signal(&self, signal: &str) -> bool {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill(1) runs");
        if sent.success() && signal == "-STOP" {
            assert!(crate::postgres_support::wait_until_stopped(self.child.id()), "sessiond did not stop");
        }
        sent.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped process must run again to die of SIGKILL promptly.
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, as PEM.
struct Tls {
    cert: String,
    key: String,
}

impl Tls {
    fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        Tls { cert: certified.cert.pem(), key: certified.signing_key.serialize_pem() }
    }

    /// The server's flags, with the files written into `dir`.
    fn server_args(&self, dir: &Path) -> Vec<String> {
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, &self.cert).expect("the certificate is written");
        std::fs::write(&key, &self.key).expect("the key is written");
        vec!["--tls-cert".into(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()]
    }

    fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.cert))
            .domain_name("localhost")
    }
}

/// Runs `sessiond [global args] probe [probe args]` and returns its output
/// and how long it took.
fn probe(global: &[String], args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(SESSIOND)
        .args(global)
        .arg("probe")
        .args(args)
        .env_remove("SESSIOND_TLS_CERT")
        .env_remove("SESSIOND_TLS_KEY")
        .env_remove("SESSIOND_LISTEN")
        .output()
        .expect("sessiond probe runs");
    (output, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[tokio::test]
async fn probe_exits_0_when_a_plaintext_sessiond_is_serving() {
    let server = Server::start(None).await;
    let address = server.address();

    let (output, _) = probe(&[], &["--address", &address]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{address}: SERVING"));

    // The readiness probe's service, and the address taken from --listen.
    let (output, _) = probe(&[], &["--address", &address, "--service", "sessiond.v1.SessionService"]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    let listen = format!("0.0.0.0:{}", server.port);
    let (output, _) = probe(&["--listen".into(), listen], &[]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{address}: SERVING"), "0.0.0.0 is probed on 127.0.0.1");
}

#[tokio::test]
async fn probe_exits_1_for_a_service_sessiond_does_not_serve() {
    let server = Server::start(None).await;
    let (output, _) = probe(&[], &["--address", &server.address(), "--service", "no.such.Service"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("NotFound"), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn probe_speaks_tls_when_the_server_certificate_is_configured() {
    let tls = Tls::new();
    let server = Server::start(Some(&tls)).await;
    let address = server.address();
    let server_args = tls.server_args(server.dir.path());

    // The server's own TLS flags (SESSIOND_TLS_* in a pod) make the probe speak TLS.
    let (output, _) = probe(&server_args, &["--address", &address]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{address}: SERVING"));
    let (output, _) = probe(&[], &["--address", &format!("localhost:{}", server.port), "--tls"]);
    assert_eq!(output.status.code(), Some(0), "--tls alone, by name: {}", text(&output.stderr));

    // Plaintext to a TLS port is no answer.
    let (output, _) = probe(&[], &["--address", &address]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).starts_with(&format!("sessiond probe: {address}: ")), "{}", text(&output.stderr));
}

#[tokio::test]
async fn probe_exits_1_when_tls_meets_a_plaintext_server() {
    let server = Server::start(None).await;
    let (output, _) = probe(&[], &["--address", &server.address(), "--tls"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("cannot connect"), "{}", text(&output.stderr));
}

#[tokio::test]
async fn probe_gives_up_on_a_stopped_sessiond_within_its_timeout() {
    let server = Server::start(None).await;
    assert!(server.signal("-STOP"), "sessiond is stopped");

    let (output, took) = probe(&[], &["--address", &server.address(), "--timeout", "500ms"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), format!("sessiond probe: {}: no answer within 500ms", server.address()));
    // The timeout plus the start of a process, with room for a busy machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");

    assert!(server.signal("-CONT"), "sessiond runs again");
    let (output, _) = probe(&[], &["--address", &server.address()]);
    assert_eq!(output.status.code(), Some(0), "serving again: {}", text(&output.stderr));
}

#[tokio::test]
async fn probe_exits_1_when_sessiond_is_gone() {
    let mut server = Server::start(None).await;
    server.child.kill().expect("sessiond is killed");
    server.child.wait().expect("sessiond is reaped");

    let (output, _) = probe(&[], &["--address", &server.address()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot connect") && stderr.contains("refused"), "{stderr}");
}
