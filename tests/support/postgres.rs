//! A throwaway PostgreSQL for tests: one cluster per test binary, started
//! on first use, and a fresh database for every test.
//!
//! Include it with `#[path = "support/postgres.rs"] mod postgres_support;`
//! (`"../support/postgres.rs"` from a binary in `tests/<dir>/`), then:
//!
//! ```ignore
//! let db = postgres_support::fresh_database().await;
//! let store = PgStore::connect(db.settings()).await?;
//! ```
//!
//! [`PgCluster::shared`] runs `initdb` into a new directory under the
//! temporary directory and starts `postgres` on it as a child process,
//! listening on a free loopback port and on a Unix socket in that
//! directory. The binaries come from `$SESSIOND_PG_BIN`, else Debian's
//! `/usr/lib/postgresql/<major>/bin` (`scripts/lib/postgres.sh` installs
//! them). Both refuse to run as root, so as root they run as the `postgres`
//! system user, created when missing. The server gets `SIGKILL` when the
//! test process dies (`setpriv --pdeathsig`), and its directory is removed
//! when the process exits, or by the next run when the process was killed.
//!
//! With `$SESSIOND_TEST_DATABASE_URL` set (a URL to a server's maintenance
//! database, whose user may create databases), that server is used instead
//! and each test's database is dropped after it.
//!
//! [`PgCluster::shared_tls`] runs a second cluster, with `ssl = on`, the
//! server certificate and client CA a test made, and a `pg_hba.conf` of
//! the test's own after a `local … trust` line: this support reaches it
//! through its Unix socket, the test over TCP with TLS.
//!
//! [`PgCluster::launch_with_sync_standby`] runs a primary and a
//! synchronous streaming standby made from it with `pg_basebackup`, for
//! failover: [`PgCluster::crash`] kills the primary, [`PgCluster::promote`]
//! makes the standby the primary.
//!
//! A test that stops and starts a server ([`PgCluster::stop`],
//! [`PgCluster::start`]) takes one of its own from [`PgCluster::launch`]
//! unless its binary runs nothing else: stopping the shared one fails every
//! test using it meanwhile.

// Each test binary uses its own part of this support.
#![allow(dead_code)]

use std::ffi::c_int;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use sessiond::store::postgres::PgSettings;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// Where the server binaries are when `SESSIOND_PG_BIN` is unset and this
/// major version is installed.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take to shut down cleanly.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The cluster's superuser, and the system user it runs as under root.
const SUPERUSER: &str = "postgres";
/// Names of the cluster directories, followed by the owning process id.
const DIR_PREFIX: &str = "sessiond-pg-";

static SHARED: OnceCell<PgCluster> = OnceCell::const_new();
static SHARED_TLS: OnceCell<PgCluster> = OnceCell::const_new();

/// What a cluster with TLS serves, as PEM, and whom it lets in.
pub struct ServerTls {
    /// `server.crt`: the server's certificate (chain).
    pub cert: String,
    /// `server.key`: its private key.
    pub key: String,
    /// `root.crt`: the CA that client certificates must lead to.
    pub client_ca: String,
    /// `pg_hba.conf` lines for TCP connections (`hostssl …`); they follow
    /// a `local all all trust` line, which this support connects through.
    pub hba: String,
}

/// A fresh, empty database on the shared cluster.
pub async fn fresh_database() -> TestDatabase {
    PgCluster::shared().await.create_database().await
}

/// One test's own database. Holds a URL, and for an external server drops
/// the database when dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// The maintenance database to drop this one from, when it must be.
    drop_from: Option<String>,
}

impl TestDatabase {
    /// Store settings for this database: a small pool, short timeouts, no
    /// bound on a session's log (the store's own tests set theirs).
    pub fn settings(&self) -> PgSettings {
        PgSettings {
            pool_size: 6,
            max_log_entries_per_session: 0,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            ..sessiond::settings::Settings::default_postgres(self.url.as_str())
        }
    }

    /// The same database reached through `url` instead (over TLS, say).
    pub fn with_url(mut self, url: String) -> TestDatabase {
        self.url = url;
        self
    }

    /// A plain connection to this database, for looking behind a store.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await.unwrap_or_else(|e| panic!("cannot connect to test database {}: {e}", self.name))
    }
}

/// The process ids of the backends connected to the database of `url`
/// under `application_name`.
pub async fn backends(url: &str, application_name: &str) -> Vec<u32> {
    let client = connect(url).await.expect("the test database accepts connections");
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_activity is readable");
    rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect()
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`…) to a process: stopping a
/// backend is what a stalled server looks like to its client, whose socket
/// stays open. `STOP` returns once the process is stopped (see
/// [`wait_until_stopped`]).
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
    if signal == "STOP" {
        assert!(wait_until_stopped(pid), "process {pid} did not stop within 10 s of SIGSTOP");
    }
}

/// Waits until every thread of process `pid` is stopped; false if that
/// takes over 10 s, true too if the process is gone. SIGSTOP takes effect
/// when one of the process's threads next runs and takes it, then stops
/// the others: on a busy machine that thread may wait for a CPU while the
/// others answer the next call, so a test that stops a process and calls
/// it at once must wait for this first.
pub fn wait_until_stopped(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Ok(threads) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
        let stopped = threads.filter_map(Result::ok).all(|thread| {
            let fields = stat_fields(thread.path().join("stat"));
            matches!(fields.as_ref().and_then(|f| f.first()).map(String::as_str), None | Some("T" | "t" | "Z" | "X"))
        });
        if stopped {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

/// The fields of a `/proc/…/stat` file after the process's name (state,
/// parent, …): `pid (comm) state ppid …`, where the name may hold spaces,
/// so they are read after its `)`. `None` when the file cannot be read (the
/// process or thread is gone).
fn stat_fields(path: impl AsRef<std::path::Path>) -> Option<Vec<String>> {
    let stat = fs::read_to_string(path).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(format!("/proc/{pid}/stat")).and_then(|fields| fields.get(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin_url) = self.drop_from.take() else { return };
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside a test's runtime, which must not block on
        // itself: the statement runs on a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let client = connect(&admin_url).await?;
                client.batch_execute(&sql).await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A PostgreSQL server tests create databases on: one this support runs,
/// or the external one of `SESSIOND_TEST_DATABASE_URL`.
pub struct PgCluster {
    /// The maintenance database, where test databases are created.
    admin_url: String,
    /// `None` for an external server.
    local: Option<LocalServer>,
}

/// A server this support runs, and what it takes to run it again.
struct LocalServer {
    /// Holds `data/` (the cluster), the Unix socket and `postgres.log`.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Whether the binaries run as the `postgres` user (the test is root).
    as_postgres: bool,
    server: Mutex<Option<Child>>,
}

impl PgCluster {
    /// The cluster every test of this binary shares, started on first use.
    pub async fn shared() -> &'static PgCluster {
        SHARED
            .get_or_init(|| async {
                match std::env::var("SESSIOND_TEST_DATABASE_URL") {
                    Ok(url) if !url.is_empty() => PgCluster { admin_url: url, local: None },
                    _ => {
                        let cluster = PgCluster::launch().await;
                        at_exit(discard_shared_cluster);
                        cluster
                    }
                }
            })
            .await
    }

    /// The cluster with TLS every test of this binary shares, launched on
    /// first use with what `tls` makes (later calls ignore theirs).
    pub async fn shared_tls(tls: impl FnOnce() -> ServerTls) -> &'static PgCluster {
        SHARED_TLS
            .get_or_init(|| async {
                let cluster = PgCluster::launch_with(Some(tls())).await;
                at_exit(discard_shared_tls_cluster);
                cluster
            })
            .await
    }

    /// A new cluster of the caller's own, started and ready. It is killed
    /// and removed when dropped.
    pub async fn launch() -> PgCluster {
        PgCluster::launch_with(None).await
    }

    /// [`launch`](Self::launch), with TLS when `tls` is given.
    pub async fn launch_with(tls: Option<ServerTls>) -> PgCluster {
        PgCluster::launch_configured(tls, |_| {}).await
    }

    /// A primary and a synchronous streaming standby of its own, both
    /// started and ready: every commit on the primary waits until the
    /// standby has it (`synchronous_standby_names = 'standby1'`). The
    /// standby's own configuration names no synchronous standby, so once
    /// promoted it commits alone. Both are killed and removed when dropped.
    pub async fn launch_with_sync_standby() -> (PgCluster, PgCluster) {
        let primary = PgCluster::launch_configured(None, |local| {
            local.append_conf("wal_level = replica\nmax_wal_senders = 4\nwal_keep_size = '64MB'\n");
            local.append_hba(&format!("host replication {SUPERUSER} 127.0.0.1/32 trust\n"));
        })
        .await;
        let source = primary.local.as_ref().expect("launched just above");
        let local = LocalServer::new(source.bin.clone(), source.as_postgres);
        let mut basebackup = local.command("pg_basebackup");
        basebackup.args(["-h", "127.0.0.1", "-p", &source.port.to_string(), "-U", SUPERUSER]).args([
            "-D",
            "data",
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        ]);
        tokio::task::spawn_blocking(move || run_to_success(basebackup, "pg_basebackup"))
            .await
            .expect("pg_basebackup does not panic");
        // `-R` wrote a `primary_conninfo`; this later one, naming the
        // standby, wins.
        local.append_auto_conf(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user={SUPERUSER} application_name=standby1'\n",
            source.port
        ));
        let standby = PgCluster { admin_url: local.admin_url(), local: Some(local) };
        standby.start().await;

        let admin = connect(&primary.admin_url).await.expect("the primary accepts connections");
        // Two statements: ALTER SYSTEM runs outside any transaction block.
        for sql in ["ALTER SYSTEM SET synchronous_standby_names = 'standby1'", "SELECT pg_reload_conf()"] {
            admin.batch_execute(sql).await.expect("the primary takes a synchronous standby");
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let rows = admin
                .query(
                    "SELECT 1 FROM pg_stat_replication \
                     WHERE application_name = 'standby1' AND state = 'streaming' AND sync_state = 'sync'",
                    &[],
                )
                .await
                .expect("pg_stat_replication is readable");
            if !rows.is_empty() {
                break;
            }
            let standby_log = standby.local.as_ref().map(LocalServer::log_tail).unwrap_or_default();
            assert!(Instant::now() < deadline, "the standby is not a streaming synchronous one:\n{standby_log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (primary, standby)
    }

    /// A new cluster, `configure`d between `initdb` and its first start.
    async fn launch_configured(tls: Option<ServerTls>, configure: impl FnOnce(&LocalServer)) -> PgCluster {
        let bin = postgres_bin();
        let as_postgres = running_as_root();
        let local = LocalServer::new(bin, as_postgres);
        let initdb = local.command("initdb");
        tokio::task::spawn_blocking(move || run_initdb(initdb)).await.expect("initdb does not panic");
        configure(&local);
        let port = local.port;
        let admin_url = match tls {
            None => local.admin_url(),
            Some(tls) => {
                local.configure_tls(&tls);
                // The Unix socket: TCP takes TLS only, and this support
                // speaks plaintext.
                let socket_dir = local.dir.to_str().expect("the temporary directory is UTF-8").replace('/', "%2F");
                format!("postgres://{SUPERUSER}@{socket_dir}:{port}/postgres")
            }
        };
        let cluster = PgCluster { admin_url, local: Some(local) };
        cluster.start().await;
        cluster
    }

    /// Whether [`stop`](Self::stop) and [`start`](Self::start) work: only
    /// on a server this support runs.
    pub fn can_restart(&self) -> bool {
        self.local.is_some()
    }

    /// The loopback port of a server this support runs.
    pub fn port(&self) -> Option<u16> {
        self.local.as_ref().map(|local| local.port)
    }

    /// The directory holding the cluster of a server this support runs;
    /// removed with it.
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|local| local.dir.as_path())
    }

    /// Creates an empty database `t_<random>`.
    pub async fn create_database(&self) -> TestDatabase {
        let name = format!("t_{:016x}", rand::random::<u64>());
        let admin = connect(&self.admin_url).await.unwrap_or_else(|e| panic!("cannot reach the test server: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = with_database(&self.admin_url, &name);
        let drop_from = self.local.is_none().then(|| self.admin_url.clone());
        TestDatabase { name, url, drop_from }
    }

    /// Starts the server (again) on its data directory and port, and waits
    /// until it accepts connections.
    pub async fn start(&self) {
        let local = self.local.as_ref().expect("only a server this support runs can be started");
        {
            let mut server = local.server.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(server.is_none(), "the test server is already running");
            let postgres = local.postgres_command();
            *server = Some(spawn_from_lasting_thread(postgres).expect("postgres starts"));
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match connect(&self.admin_url).await {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("postgres did not accept connections within {READY_TIMEOUT:?}: {e}\n{}", local.log_tail())
                }
                Err(_) => {}
            }
            if local.has_exited() {
                panic!("postgres exited while starting:\n{}", local.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills every process of a server this support runs at once
    /// (`SIGKILL`), as a machine or container dying does, and reaps it.
    pub async fn crash(&self) {
        self.signal_all("KILL");
        let local = self.local.as_ref().expect("only a server this support runs can be killed");
        let server = local.server.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut server) = server {
            tokio::task::spawn_blocking(move || server.wait()).await.expect("reaping does not panic").ok();
        }
    }

    /// Promotes a standby this support runs to a primary, and answers when
    /// it accepts writes.
    pub async fn promote(&self) {
        let admin = connect(&self.admin_url).await.expect("the standby accepts connections");
        let promoted: bool =
            admin.query_one("SELECT pg_promote()", &[]).await.expect("pg_promote runs on a standby").get(0);
        assert!(promoted, "the standby was not promoted within pg_promote's minute");
    }

    /// Stops (`STOP`) or resumes (`CONT`) every process of a server this
    /// support runs, the postmaster and all its children: a paused VM or a
    /// network partition, as its clients see it (sockets open, no answer).
    pub fn signal_all(&self, signal_name: &str) {
        let local = self.local.as_ref().expect("only a server this support runs can be signalled");
        let pid = local.server.lock().unwrap_or_else(PoisonError::into_inner).as_ref().expect("running").id();
        // The postmaster first: stopped, it forks no backend unseen.
        signal(pid, signal_name);
        for child in children_of(pid) {
            // A child may exit between the listing and the signal (once
            // resumed, a backend whose client left does).
            let _ = Command::new("kill").args([&format!("-{signal_name}"), &child.to_string()]).status();
        }
        if signal_name == "STOP" {
            for child in children_of(pid) {
                assert!(wait_until_stopped(child), "process {child} did not stop within 10 s of SIGSTOP");
            }
        }
    }

    /// Shuts the server down (fast: open sessions are disconnected) and
    /// waits until it is gone; [`start`](Self::start) brings it back.
    pub async fn stop(&self) {
        let local = self.local.as_ref().expect("only a server this support runs can be stopped");
        let server = local.server.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut server) = server else { return };
        let pid = server.id().to_string();
        let signalled = Command::new("kill").args(["-INT", &pid]).status().is_ok_and(|s| s.success());
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while signalled && Instant::now() < deadline {
                if !matches!(server.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("postgres did not shut down in time; killing it");
            let _ = server.kill();
            let _ = server.wait();
        })
        .await
        .expect("waiting for postgres does not panic");
    }

    /// Kills the server and removes its directory, without waiting for a
    /// clean shutdown: nothing of a test cluster needs to survive.
    fn discard(&self) {
        let Some(local) = &self.local else { return };
        let server = match local.server.try_lock() {
            Ok(mut server) => server.take(),
            Err(_) => None,
        };
        if let Some(mut server) = server {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = fs::remove_dir_all(&local.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.discard();
    }
}

impl LocalServer {
    /// A server not yet initialised: its directory (the `postgres` user's
    /// when the test is root) and a free port.
    fn new(bin: PathBuf, as_postgres: bool) -> LocalServer {
        remove_stale_clusters();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("a temporary directory can be created")
            .keep();
        if as_postgres {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("root can hand a directory to postgres");
        }
        LocalServer { dir, bin, port: free_port(), as_postgres, server: Mutex::new(None) }
    }

    /// The maintenance database over TCP, as the superuser.
    fn admin_url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    fn append_conf(&self, lines: &str) {
        append(&self.data_dir().join("postgresql.conf"), lines);
    }

    /// `postgresql.auto.conf`: read after `postgresql.conf`, so it wins.
    fn append_auto_conf(&self, lines: &str) {
        append(&self.data_dir().join("postgresql.auto.conf"), lines);
    }

    fn append_hba(&self, lines: &str) {
        append(&self.data_dir().join("pg_hba.conf"), lines);
    }

    /// A command running the server binary `name`, as `postgres` when the
    /// test is root, and killed should the test process die.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new("setpriv");
        if self.as_postgres {
            command.args(["--reuid", SUPERUSER, "--regid", SUPERUSER, "--init-groups"]);
        }
        command.args(["--pdeathsig", "KILL", "--"]).arg(self.bin.join(name)).current_dir(&self.dir);
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn postgres_command(&self) -> Command {
        let log = File::options().create(true).append(true).open(self.log_path()).expect("the server log opens");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .arg("-k")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log handle clones"))
            .stderr(log);
        command
    }

    /// Writes the server's certificate, key and client CA into the data
    /// directory, turns `ssl` on and replaces `pg_hba.conf`. The key must
    /// be the server user's and private, or Postgres refuses to start.
    fn configure_tls(&self, tls: &ServerTls) {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let data = self.data_dir();
        let hba = format!("local all all trust\n{}\n", tls.hba);
        for (name, contents) in
            [("server.crt", &tls.cert), ("server.key", &tls.key), ("root.crt", &tls.client_ca), ("pg_hba.conf", &hba)]
        {
            let path = data.join(name);
            fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("the test owns the file");
            if self.as_postgres {
                let (uid, gid) = postgres_user();
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("root can hand a file to postgres");
            }
        }
        let mut conf = File::options().append(true).open(data.join("postgresql.conf")).expect("initdb wrote one");
        writeln!(conf, "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'")
            .expect("postgresql.conf is writable");
    }

    fn has_exited(&self) -> bool {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server.as_mut().is_none_or(|s| !matches!(s.try_wait(), Ok(None)))
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Appends `lines` to a file of a cluster (which the server user owns;
/// root may write it).
fn append(path: &Path, lines: &str) {
    use std::io::Write as _;
    let mut file =
        File::options().append(true).open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.write_all(lines.as_bytes()).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Runs a server tool to completion; panics with its output when it fails.
fn run_to_success(mut command: Command, name: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    assert!(
        output.status.success(),
        "{name} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_initdb(mut initdb: Command) {
    let data = Path::new("data");
    let output = initdb
        .arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        .stdin(Stdio::null())
        .output()
        .expect("initdb starts");
    assert!(
        output.status.success(),
        "initdb failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..path_start])
}

/// The directory holding `postgres` and `initdb`.
fn postgres_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SESSIOND_PG_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    if Path::new(DEFAULT_BIN).join("postgres").exists() {
        return PathBuf::from(DEFAULT_BIN);
    }
    // Any other major version Debian installed, the newest first.
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries: set SESSIOND_PG_BIN, install Debian's postgresql \
             (scripts/lib/postgres.sh: ensure_postgres_binaries) or set SESSIOND_TEST_DATABASE_URL"
        )
    })
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process' effective user.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` system user's uid and gid, creating the user if needed.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, SUPERUSER]).stderr(Stdio::null()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().parse().ok())?
    };
    if id("-u").is_none() {
        // Another test binary may create it at the same moment; the ids
        // below tell whether one of us did.
        let _ = Command::new("useradd").args(["--system", "--user-group", SUPERUSER]).status();
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("running as root, and there is no {SUPERUSER} user to run PostgreSQL as (useradd failed)"),
    }
}

/// A port on 127.0.0.1 free at this moment.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the loopback interface takes a listener");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// Removes the cluster directories of test processes that no longer run
/// (killed before they could clean up).
fn remove_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)?.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts `command` from a thread that lives as long as the test process.
/// `--pdeathsig` fires when the *thread* that forked the server exits, and
/// each tokio test runs on threads that end with it: forked from one of
/// those, a shared server would die with the first test.
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static LAUNCHER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-launcher".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("a thread can be started");
        requests
    });
    let (reply, answer) = mpsc::channel();
    launcher.send((command, reply)).expect("the launcher thread runs as long as the process");
    answer.recv().expect("the launcher answers every request")
}

unsafe extern "C" {
    /// The C library's `atexit`: runs `callback` when the process exits.
    safe fn atexit(callback: extern "C" fn()) -> c_int;
}

/// Registers `callback` to run at exit; statics are never dropped, so
/// this is how the shared cluster gets removed.
fn at_exit(callback: extern "C" fn()) {
    if atexit(callback) != 0 {
        eprintln!("cannot register the test cluster's removal at exit");
    }
}

extern "C" fn discard_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.discard();
    }
}

extern "C" fn discard_shared_tls_cluster() {
    if let Some(cluster) = SHARED_TLS.get() {
        cluster.discard();
    }
}

/// `EXPLAIN` of `sql` prepared (every earlier statement deallocated) and
/// run with `params`, one line per row: the plan sessiond's statement gets,
/// generic when the session forces generic plans. Lists bind as arrays.
pub async fn explain_prepared(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[sessiond::store::sql::Param],
) -> Vec<String> {
    use sessiond::store::sql::Param;
    let quoted = |t: &str| format!("'{}'", t.replace('\'', "''"));
    let values: Vec<String> = params
        .iter()
        .map(|p| match p {
            Param::Int(n) => n.to_string(),
            Param::Text(t) => quoted(t),
            Param::Texts(all) => format!("ARRAY[{}]", all.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")),
        })
        .collect();
    client.batch_execute(&format!("DEALLOCATE ALL; PREPARE explained AS {sql}")).await.expect("prepared");
    client
        .query(&format!("EXPLAIN EXECUTE explained({})", values.join(", ")), &[])
        .await
        .expect("the plan is explained")
        .iter()
        .map(|row| row.get(0))
        .collect()
}
