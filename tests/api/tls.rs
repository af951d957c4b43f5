//! TLS, and mutual TLS as a way in besides API keys: a client certificate
//! signed by the configured CA and named in the keys file is that entry's
//! tenant and role, at the API and (for an admin entry) at the console.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::settings::Settings;
use sessiond::startup::Application;
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::failure;

/// A CA, a server certificate for `localhost` and a client certificate;
/// a second server certificate, with a key of its own, to rotate to.
struct Pki {
    ca: String,
    server: (String, String),
    server_der: Vec<u8>,
    next_server: (String, String),
    next_server_der: Vec<u8>,
    client: (String, String),
    client_der: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::new()).expect("no names is valid");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a key");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("a valid name")
            .signed_by(&key, &issuer)
            .expect("signed");
        (cert, key)
    };
    let (server, server_key) = leaf("localhost");
    let (next_server, next_server_key) = leaf("localhost");
    let (client, client_key) = leaf("checkout.acme");
    Pki {
        ca: ca.pem(),
        server: (server.pem(), server_key.serialize_pem()),
        server_der: server.der().to_vec(),
        next_server: (next_server.pem(), next_server_key.serialize_pem()),
        next_server_der: next_server.der().to_vec(),
        client_der: client.der().to_vec(),
        client: (client.pem(), client_key.serialize_pem()),
    }
}

struct TlsApp {
    address: String,
    /// The console's address, when it was asked for.
    console: Option<std::net::SocketAddr>,
    ca: String,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_tls(pki: &Pki, keys: &str) -> TlsApp {
    spawn_tls_with(pki, keys, |_| {}).await
}

async fn spawn_tls_with(pki: &Pki, keys: &str, configure: impl FnOnce(&mut Settings)) -> TlsApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("written");
        path
    };
    let mut settings = Settings::for_tests("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    settings.auth.tls_cert = Some(write("server.crt", &pki.server.0));
    settings.auth.tls_key = Some(write("server.key", &pki.server.1));
    settings.auth.tls_client_ca = Some(write("ca.crt", &pki.ca));
    settings.auth.api_keys_file = Some(write("keys.yaml", keys));
    settings.auth.roles_file = Some(crate::helpers::ROLES_FILE.into());
    configure(&mut settings);
    let app =
        Application::build_with_clock(settings, Arc::new(sessiond::clock::SystemClock)).await.expect("the app builds");
    let address = format!("https://{}", app.local_addr());
    let console = app.console_addr();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    TlsApp { address, console, ca: pki.ca.clone(), _dir: dir, server }
}

impl Drop for TlsApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TlsApp {
    async fn client(&self, identity: Option<&(String, String)>) -> SessionServiceClient<Channel> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca)).domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel =
            Channel::from_shared(self.address.clone()).expect("a valid uri").tls_config(tls).expect("TLS config");
        SessionServiceClient::new(channel.connect().await.expect("the TLS handshake succeeds"))
    }
}

fn create() -> pb::CreateSessionRequest {
    pb::CreateSessionRequest { kind: pb::SessionKind::WebUser.into(), user_id: "alice".into(), ..Default::default() }
}

#[tokio::test]
async fn a_configured_client_certificate_authenticates_as_its_tenant() {
    let pki = pki();
    let fingerprint = hex::encode(Sha256::digest(&pki.client_der));
    let keys = format!("keys:\n  - {{name: checkout, tenant: acme, role: service, cert_sha256: \"{fingerprint}\"}}\n");
    let app = spawn_tls(&pki, &keys).await;

    let mut with_cert = app.client(Some(&pki.client)).await;
    let created = with_cert.create_session(create()).await.expect("the certificate is a way in").into_inner();
    assert!(!created.token.is_empty());

    let mut without = app.client(None).await;
    assert_eq!(failure(without.create_session(create()).await).code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_certificate_not_in_the_keys_file_is_refused_even_when_the_ca_signed_it() {
    let pki = pki();
    let (key, hash) = sessiond::auth::generate_key();
    let app =
        spawn_tls(&pki, &format!("keys:\n  - {{name: a, tenant: acme, role: service, hash: \"{hash}\"}}\n")).await;

    let mut with_cert = app.client(Some(&pki.client)).await;
    assert_eq!(failure(with_cert.create_session(create()).await).code(), Code::Unauthenticated);

    // An API key still works over TLS, with or without a certificate.
    let mut request = tonic::Request::new(create());
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    app.client(None).await.create_session(request).await.expect("the key is a way in");
}

#[tokio::test]
async fn connections_that_never_finish_the_tls_handshake_are_closed_within_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let pki = pki();
    let (key, hash) = sessiond::auth::generate_key();
    let keys = format!("keys:\n  - {{name: a, tenant: acme, role: service, hash: \"{hash}\"}}\n");
    let bound = std::time::Duration::from_millis(500);
    let app = spawn_tls_with(&pki, &keys, |s| s.transport.handshake_timeout = bound).await;
    let address = app.address.trim_start_matches("https://").to_owned();

    let started = std::time::Instant::now();
    let mut waiting = tokio::task::JoinSet::new();
    for i in 0..6 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connects");
        if i % 2 == 1 {
            // The start of a TLS record that never goes on.
            socket.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).await.expect("sent");
        }
        waiting.spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                let read = tokio::time::timeout(crate::helpers::PATIENCE, socket.read(&mut buf));
                match read.await.expect("the server closes the connection") {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => continue,
                }
            }
        });
    }
    while let Some(closed) = waiting.join_next().await {
        let after = closed.expect("the task does not panic");
        assert!(after >= bound, "closed after {after:?}, before the bound");
        assert!(after < bound + std::time::Duration::from_secs(5), "closed after {after:?}, long past the bound");
    }

    let mut request = tonic::Request::new(create());
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    app.client(None).await.create_session(request).await.expect("a TLS client is served");
}

#[tokio::test]
async fn without_a_keys_file_the_client_ca_requires_a_certificate_of_every_caller() {
    let pki = pki();
    let app = spawn_tls_with(&pki, "", |s| s.auth.api_keys_file = None).await;

    let mut with_cert = app.client(Some(&pki.client)).await;
    with_cert.create_session(create()).await.expect("a CA-signed certificate is the way in");

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&app.ca)).domain_name("localhost");
    let channel = Channel::from_shared(app.address.clone()).expect("a valid uri").tls_config(tls).expect("TLS config");
    // TLS 1.3 lets the client finish its side of the handshake before the
    // server has checked the (missing) certificate: the refusal may come
    // with the connection or with the first call.
    if let Ok(channel) = channel.connect().await {
        let refused = SessionServiceClient::new(channel).create_session(create()).await;
        assert!(refused.is_err(), "a caller without a certificate is refused: {refused:?}");
    }
}

/// The certificate a new TLS handshake with `address` is served, verified
/// against `ca` for `localhost`, without a client certificate.
async fn served_certificate(address: &str, ca: &str) -> Result<Vec<u8>, std::io::Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = tokio::net::TcpStream::connect(address.trim_start_matches("https://")).await?;
    let name = ServerName::try_from("localhost").expect("a valid name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, socket).await?;
    let chain = tls.get_ref().1.peer_certificates().expect("the server sent a certificate");
    Ok(chain[0].to_vec())
}

/// Writes `cert` and `key` into a new directory under `dir` and points
/// `dir/current` at it in one step, as Kubernetes updates a mounted Secret.
fn publish(dir: &std::path::Path, version: &str, cert: &str, key: &str) {
    let versioned = dir.join(version);
    std::fs::create_dir(&versioned).expect("a directory");
    std::fs::write(versioned.join("tls.crt"), cert).expect("written");
    std::fs::write(versioned.join("tls.key"), key).expect("written");
    let staged = dir.join("staged");
    std::os::unix::fs::symlink(&versioned, &staged).expect("a symlink");
    std::fs::rename(&staged, dir.join("current")).expect("the symlink is swapped");
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_while_open_ones_keep_working() {
    let pki = pki();
    let (key, hash) = sessiond::auth::generate_key();
    let keys = format!("keys:\n  - {{name: a, tenant: acme, role: service, hash: \"{hash}\"}}\n");
    let secret = tempfile::tempdir().expect("a temporary directory");
    publish(secret.path(), "v1", &pki.server.0, &pki.server.1);
    let app = spawn_tls_with(&pki, &keys, |s| {
        s.auth.tls_cert = Some(secret.path().join("current/tls.crt"));
        s.auth.tls_key = Some(secret.path().join("current/tls.key"));
        s.auth.reload_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let authorized = || {
        let mut request = tonic::Request::new(create());
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        request
    };
    let mut open = app.client(None).await;
    open.create_session(authorized()).await.expect("served before the rotation");
    assert_eq!(served_certificate(&app.address, &app.ca).await.expect("a handshake"), pki.server_der);

    publish(secret.path(), "v2", &pki.next_server.0, &pki.next_server.1);
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    while served_certificate(&app.address, &app.ca).await.expect("a handshake") != pki.next_server_der {
        assert!(std::time::Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    open.create_session(authorized()).await.expect("the connection opened before the rotation keeps working");
    app.client(None).await.create_session(authorized()).await.expect("a new connection is served");

    // A key that does not match its certificate, then a malformed
    // certificate: each refused, the certificate in force kept.
    publish(secret.path(), "v3", &pki.server.0, &pki.next_server.1);
    publish(
        secret.path(),
        "v4",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        &pki.next_server.1,
    );
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(served_certificate(&app.address, &app.ca).await.expect("a handshake"), pki.next_server_der);
    }
    open.create_session(authorized()).await.expect("still served");
}

#[test]
fn a_tls_key_that_does_not_match_its_certificate_or_a_malformed_certificate_is_refused() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("written");
        path
    };
    let mut settings = Settings::for_tests("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    settings.auth.tls_cert = Some(write("server.crt", &pki.server.0));
    settings.auth.tls_key = Some(write("server.key", &pki.server.1));
    assert!(sessiond::reload::load_tls(&settings).expect("a matching pair loads").is_some());

    settings.auth.tls_key = Some(write("other.key", &pki.next_server.1));
    let refused = format!("{:#}", sessiond::reload::load_tls(&settings).expect_err("a mismatch"));
    assert!(refused.contains("does not match"), "{refused}");

    settings.auth.tls_key = Some(dir.path().join("server.key"));
    settings.auth.tls_cert =
        Some(write("bad.crt", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"));
    let refused = format!("{:#}", sessiond::reload::load_tls(&settings).expect_err("malformed"));
    assert!(refused.contains("bad.crt") && refused.contains("malformed"), "{refused}");
}

#[tokio::test]
async fn json_over_http1_is_served_over_tls_to_clients_that_offer_only_http1() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let pki = pki();
    let (key, hash) = sessiond::auth::generate_key();
    let app =
        spawn_tls(&pki, &format!("keys:\n  - {{name: a, tenant: acme, role: service, hash: \"{hash}\"}}\n")).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(app.ca.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let address = app.address.trim_start_matches("https://").to_owned();
    let socket = tokio::net::TcpStream::connect(&address).await.expect("connects");
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, socket).await.expect("a handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"http/1.1".as_slice()));

    let body = r#"{"kind": "SESSION_KIND_WEB_USER", "userId": "alice"}"#;
    let request = format!(
        "POST /sessiond.v1.SessionService/CreateSession HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(crate::helpers::PATIENCE, tls.read_to_end(&mut answer)).await.expect("answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(r#""userId":"alice""#), "{answer}");
}

/// GETs `path` from the console at `address` over TLS and HTTP/1.1, with
/// the client certificate `identity` when given; answers the status and
/// the whole answer (head and body).
async fn console_get(
    address: std::net::SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
    path: &str,
) -> (u16, String) {
    console_request(address, ca, identity, &format!("GET {path} HTTP/1.1\r\n"), "").await
}

/// Sends a request to the console as [`console_get`] does: `head` (its
/// request line and headers), `Host` and `Connection: close`, then `body`.
async fn console_request(
    address: std::net::SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
    head: &str,
    body: &str,
) -> (u16, String) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a PEM key");
            builder.with_client_auth_cert(chain, key).expect("a client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.expect("the console accepts connections");
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut tls = connector.connect(name, tcp).await.expect("the TLS handshake succeeds");
    let request = format!("{head}Host: localhost\r\nConnection: close\r\n\r\n{body}");
    tls.write_all(request.as_bytes()).await.expect("the request is sent");
    let mut answer = Vec::new();
    // The server may close without a TLS close_notify: what came is the answer.
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{answer}"));
    (status, answer)
}

#[tokio::test]
async fn the_console_signs_in_an_admins_client_certificate_without_a_key_and_no_other() {
    let pki = pki();
    let fingerprint = hex::encode(Sha256::digest(&pki.client_der));
    let entry = |role: &str| {
        format!("keys:\n  - {{name: ops-laptop, tenant: acme, role: {role}, cert_sha256: \"{fingerprint}\"}}\n")
    };
    let with_console = |s: &mut Settings| s.server.console_listen = Some("127.0.0.1:0".parse().expect("an address"));
    let app = spawn_tls_with(&pki, &entry("admin"), with_console).await;
    let console = app.console.expect("the console listens");

    let (status, page) = console_get(console, &app.ca, Some(&pki.client), "/sessions").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("ops-laptop") && page.contains("acme"), "the entry and its tenant: {page}");
    assert!(page.contains("signed in by client certificate") && !page.contains("Sign out"), "{page}");
    let (status, page) = console_get(console, &app.ca, Some(&pki.client), "/live").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "the server's version: {page}");

    // A form posted by an admin signed in by certificate must say it comes
    // from the console itself: its token, derived from a certificate (no
    // secret), is not enough alone.
    let certificate = hex::encode(Sha256::digest(&pki.client_der));
    let token = Sha256::new().chain_update("sessiond/console-csrf").chain_update(format!("certificate:{certificate}"));
    let body = format!("csrf={}", hex::encode(token.finalize()));
    let form = |origin: &str| {
        format!(
            "POST /logout HTTP/1.1\r\n{origin}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    let (status, answer) = console_request(console, &app.ca, Some(&pki.client), &form(""), &body).await;
    assert_eq!(status, 403, "neither Origin nor Sec-Fetch-Site: {answer}");
    let own = form("Origin: https://localhost\r\n");
    let (status, answer) = console_request(console, &app.ca, Some(&pki.client), &own, &body).await;
    assert_eq!(status, 303, "from the console's own origin: {answer}");

    // Without the certificate: the sign-in form, and 401 for the scripts.
    let (status, answer) = console_get(console, &app.ca, None, "/sessions").await;
    assert_eq!(status, 303, "{answer}");
    assert!(answer.to_lowercase().contains("location: /login"), "{answer}");
    let (status, _) = console_get(console, &app.ca, None, "/live/figures").await;
    assert_eq!(status, 401);

    // The same certificate as a service entry is not an admin.
    let service = spawn_tls_with(&pki, &entry("service"), with_console).await;
    let console = service.console.expect("the console listens");
    let (status, page) = console_get(console, &service.ca, Some(&pki.client), "/sessions").await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("admin"), "{page}");
}
