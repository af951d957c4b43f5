//! sessiond on a Postgres that takes TLS only: a cluster of its own with
//! `ssl = on`, a certificate for `localhost` and 127.0.0.1 from a CA this
//! test makes, and a `pg_hba.conf` of `hostssl` lines, one of which asks
//! the `sessiond_cert` role for a client certificate. Each `sslmode`
//! checks what libpq's does; what cannot work stops start-up with an error
//! that says why.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use helpers::TestApp;
use postgres_support::{PgCluster, ServerTls, TestDatabase};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sessiond::pb::SessionKind as Kind;
use sessiond::settings::Settings;
use sessiond::startup::Application;
use sessiond::store::postgres::{SCHEMA_VERSION, migrate};
use tokio::sync::OnceCell;

/// The role `pg_hba.conf` lets in only with a client certificate.
const CERT_ROLE: &str = "sessiond_cert";

/// The TLS cluster and the files a connection string names.
struct Tls {
    cluster: &'static PgCluster,
    port: u16,
    /// The CA of the server's (and the client's) certificate.
    ca: PathBuf,
    /// A CA that signed nothing of this cluster's.
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// PEM texts: a CA, the server's certificate and key, a client
/// certificate for [`CERT_ROLE`] and its key, and an unrelated CA.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    other_ca: String,
}

fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).expect("no names is valid");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let ca = params.self_signed(&key).expect("a CA certificate");
    (ca.pem(), Issuer::new(params, key))
}

fn signed(names: &[&str], common_name: &str, issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("a key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("valid names");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let cert = params.signed_by(&key, issuer).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca, issuer) = certificate_authority("sessiond test CA");
    let (other_ca, _) = certificate_authority("another CA");
    Pki {
        server: signed(&["localhost", "127.0.0.1"], "localhost", &issuer),
        client: signed(&[], CERT_ROLE, &issuer),
        ca,
        other_ca,
    }
}

async fn tls() -> &'static Tls {
    static TLS: OnceCell<Tls> = OnceCell::const_new();
    TLS.get_or_init(|| async {
        let pki = pki();
        let cluster = PgCluster::shared_tls(|| ServerTls {
            cert: pki.server.0.clone(),
            key: pki.server.1.clone(),
            client_ca: pki.ca.clone(),
            hba: format!("hostssl all {CERT_ROLE} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust"),
        })
        .await;
        let dir = cluster.dir().expect("a cluster this support runs").join("client");
        std::fs::create_dir_all(&dir).expect("the cluster directory is writable");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("the client directory is writable");
            path
        };
        let db = cluster.create_database().await;
        db.connect().await.batch_execute(&format!("CREATE ROLE {CERT_ROLE} LOGIN SUPERUSER")).await.expect("a role");
        Tls {
            cluster,
            port: cluster.port().expect("a cluster this support runs"),
            ca: write("ca.pem", &pki.ca),
            other_ca: write("other-ca.pem", &pki.other_ca),
            client_cert: write("client.pem", &pki.client.0),
            client_key: write("client.key", &pki.client.1),
        }
    })
    .await
}

impl Tls {
    /// A fresh database, and a URL to it over TCP with `query`.
    async fn database(&self, query: &str) -> (TestDatabase, String) {
        let db = self.cluster.create_database().await;
        let url = format!("postgres://postgres@localhost:{}/{}?{query}", self.port, db.name);
        (db, url)
    }
}

/// An error and its causes, as the start-up log shows them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut told = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        told.push_str(&format!(": {e}"));
        cause = e.source();
    }
    told
}

/// What migrating over `url` answers: the steps applied, or the error.
async fn migrate_over(url: String) -> Result<u32, String> {
    migrate(&Settings::default_postgres(url)).await.map_err(|e| chain(&e))
}

/// Why a sessiond on `url` does not start.
async fn start_up_error(url: String) -> String {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings::for_tests("127.0.0.1:0".parse().expect("an address"), data_dir.path().to_owned());
    settings.auth.roles_file = Some(helpers::ROLES_FILE.into());
    settings.store.database_url = Some(url.parse().expect("any string is a secret"));
    match Application::build(settings).await {
        Ok(_) => panic!("sessiond started"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_every_connection_with_tls_and_sessiond_serves_a_create() {
    let tls = tls().await;
    let (db, url) = tls.database(&format!("sslmode=verify-full&sslrootcert={}", tls.ca.display())).await;
    let admin = db.connect().await;
    let mut app = TestApp::spawn_on(db.with_url(url), |_| {}).await;
    let created = app.create(Kind::WebUser, "alice").await;
    app.get(&created.token).await.expect("the session reads back");

    let rows = admin
        .query(
            "SELECT application_name, ssl FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl is readable");
    let connections: Vec<(String, bool)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    for role in ["sessiond", "sessiond listener", "sessiond probe"] {
        assert!(connections.iter().any(|(name, _)| name == role), "no {role} connection: {connections:?}");
    }
    assert!(connections.iter().all(|(_, ssl)| *ssl), "a connection without TLS: {connections:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_stops_start_up_with_a_clear_error() {
    let tls = tls().await;
    for mode in ["verify-full", "verify-ca", "require"] {
        let (_db, url) = tls.database(&format!("sslmode={mode}&sslrootcert={}", tls.other_ca.display())).await;
        let err = start_up_error(url).await;
        assert!(err.contains("connecting to Postgres"), "{mode}: {err}");
        assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{mode}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_for_another_host_name_and_verify_ca_does_not_check_it() {
    let tls = tls().await;
    let db = tls.cluster.create_database().await;
    // Connects to 127.0.0.1, checking the certificate against the name.
    let pairs = |mode: &str| {
        format!(
            "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname={} sslmode={mode} sslrootcert='{}'",
            tls.port,
            db.name,
            tls.ca.display()
        )
    };
    let err = start_up_error(pairs("verify-full")).await;
    assert!(err.contains("certificate not valid for name \"db.invalid\""), "{err}");
    assert_eq!(migrate_over(pairs("verify-ca")).await, Ok(SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_without_checking_the_certificate() {
    let tls = tls().await;
    for mode in ["require", "prefer"] {
        let db = tls.cluster.create_database().await;
        let pairs = format!(
            "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname={} sslmode={mode}",
            tls.port, db.name
        );
        assert_eq!(migrate_over(pairs).await, Ok(SCHEMA_VERSION), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_connection_is_refused_by_this_cluster() {
    let tls = tls().await;
    let (_db, url) = tls.database("sslmode=disable").await;
    let err = migrate_over(url).await.expect_err("pg_hba.conf takes TLS only");
    assert!(err.contains("no pg_hba.conf entry") && err.contains("no encryption"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_accepted_where_pg_hba_asks_for_one_and_refused_without() {
    let tls = tls().await;
    let db = tls.cluster.create_database().await;
    let url = |client: &str| {
        format!(
            "postgres://{CERT_ROLE}@localhost:{}/{}?sslmode=verify-full&sslrootcert={}{client}",
            tls.port,
            db.name,
            tls.ca.display()
        )
    };
    let err = migrate_over(url("")).await.expect_err("no client certificate");
    assert!(err.contains("28000") && err.contains("connection requires a valid client certificate"), "{err}");
    let with_certificate = url(&format!("&sslcert={}&sslkey={}", tls.client_cert.display(), tls.client_key.display()));
    assert_eq!(migrate_over(with_certificate).await, Ok(SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sslmode_or_an_unreadable_sslrootcert_stops_start_up_with_a_clear_error() {
    let tls = tls().await;
    let (_db, url) = tls.database("sslmode=verify_full").await;
    let err = start_up_error(url).await;
    assert!(err.contains("sslmode \"verify_full\" is not one of"), "{err}");

    let missing = tls.ca.with_file_name("missing.pem");
    let (_db, url) = tls.database(&format!("sslmode=verify-full&sslrootcert={}", missing.display())).await;
    let err = start_up_error(url).await;
    assert!(err.contains(&format!("cannot read sslrootcert {}", missing.display())), "{err}");

    // A directory: unreadable as a file, even to root.
    let directory = tls.ca.parent().expect("in a directory");
    let (_db, url) = tls.database(&format!("sslmode=verify-ca&sslrootcert={}", directory.display())).await;
    let err = start_up_error(url).await;
    assert!(err.contains(&format!("cannot read sslrootcert {}", directory.display())), "{err}");

    let (_db, url) = tls.database(&format!("sslmode=verify-full&sslrootcert={}", tls.client_key.display())).await;
    let err = start_up_error(url).await;
    assert!(err.contains("holds no certificate"), "{err}");
}

/// The sessiond binary, its log on standard error.
fn sessiond(url: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .env("SESSIOND_DATABASE_URL", url)
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_DATA_DIR", data_dir)
        .env("SESSIOND_ROLES_FILE", helpers::ROLES_FILE)
        .env("SESSIOND_LOG", "info")
        .env("SESSIOND_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessiond_migrate_and_a_restart_over_tls_log_no_postgres_notice() {
    let tls = tls().await;
    let (_db, url) = tls.database(&format!("sslmode=verify-full&sslrootcert={}", tls.ca.display())).await;
    let data_dir = tempfile::tempdir().expect("a temporary directory");

    let migrated = sessiond(&url, data_dir.path()).arg("migrate").output().expect("sessiond runs");
    let log = String::from_utf8_lossy(&migrated.stderr).into_owned();
    assert!(migrated.status.success(), "sessiond migrate failed:\n{log}");
    assert!(log.contains("migrations applied"), "{log}");

    // A start on the migrated database, until it serves.
    let mut server = sessiond(&url, data_dir.path()).spawn().expect("sessiond starts");
    let stderr = server.stderr.take().expect("piped");
    let log = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.expect("the log is text");
            log.push_str(&line);
            log.push('\n');
            if line.contains("sessiond serving") || line.contains("start-up failed") {
                break;
            }
        }
        log
    });
    let log = tokio::time::timeout(Duration::from_secs(30), log).await.expect("sessiond starts in time").expect("read");
    let _ = server.kill();
    let _ = server.wait();
    assert!(log.contains("sessiond serving"), "{log}");
    for notice in ["NOTICE", "already exists"] {
        assert!(!log.contains(notice), "a Postgres notice reached the log:\n{log}");
    }
}
