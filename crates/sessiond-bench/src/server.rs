//! Servers under measurement, each a child process on a free loopback port
//! with its own scratch directory: sessiond itself, or the echo baseline
//! (this binary as `echo-server`). A child is ready when `grpc.health.v1`
//! answers SERVING; it is killed, and its directory removed, on drop.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::procfs::Process;
use crate::scratch::ScratchDir;

/// Longest wait for a child to answer SERVING before the run fails (a
/// child under valgrind starts some fifty times slower).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);

/// The roles the sessiond children load: the privileges and roles of
/// `config/roles.yaml`, fixed here so that a benchmark does not change
/// when that file does.
const ROLES_FILE: &str = "\
privileges:
  - privilege: viewBasic
  - privilege: viewSales
    includes: [viewBasic]
  - privilege: editSales
    includes: [viewSales]
  - privilege: admin
    includes: [editSales]
roles:
  - role: Viewer
    privileges: [viewBasic]
  - role: Manager
    privileges: [editSales]
";

/// Starts the servers of a run: knows the binaries and the roles file.
#[derive(Debug)]
pub struct Launcher {
    sessiond: PathBuf,
    bench: PathBuf,
    roles_file: PathBuf,
    /// Flags given to every sessiond, after the launcher's own.
    sessiond_args: Vec<String>,
    /// A command every server runs under (e.g. valgrind), empty for none.
    wrapper: Vec<OsString>,
    /// Holds `roles_file` for as long as the launcher lives.
    _dir: ScratchDir,
}

impl Launcher {
    /// `sessiond` defaults to the binary next to this executable, which is
    /// where cargo builds both.
    pub fn new(sessiond: Option<PathBuf>, sessiond_args: Vec<String>) -> anyhow::Result<Self> {
        let bench = std::env::current_exe().context("locating the sessiond-bench executable")?;
        let sessiond = sessiond.unwrap_or_else(|| bench.with_file_name("sessiond"));
        if !sessiond.is_file() {
            bail!(
                "no sessiond binary at {} (build it with `cargo build --release --bins`, or pass --sessiond-bin)",
                sessiond.display()
            );
        }
        let dir = ScratchDir::new("run")?;
        let roles_file = dir.path().join("roles.yaml");
        std::fs::write(&roles_file, ROLES_FILE).with_context(|| format!("writing {}", roles_file.display()))?;
        Ok(Self { sessiond, bench, roles_file, sessiond_args, wrapper: Vec::new(), _dir: dir })
    }

    /// Runs every server it starts under `wrapper`: `valgrind
    /// --tool=callgrind …` runs `valgrind … <server> <flags>`.
    pub fn with_wrapper(mut self, wrapper: Vec<OsString>) -> Self {
        self.wrapper = wrapper;
        self
    }

    pub fn sessiond_path(&self) -> &Path {
        &self.sessiond
    }

    /// A fresh sessiond (empty store, the bench roles file, default
    /// settings otherwise, but for `--sessiond-arg`s), serving. `extra`
    /// flags come last.
    pub async fn sessiond(&self, extra: &[&str]) -> anyhow::Result<ServerProcess> {
        let home = ScratchDir::new("sessiond")?;
        let addr = free_port()?;
        let mut args: Vec<OsString> = vec![
            "--listen".into(),
            addr.to_string().into(),
            "--data-dir".into(),
            home.path().join("data").into(),
            "--roles-file".into(),
            self.roles_file.clone().into(),
        ];
        args.extend(self.sessiond_args.iter().map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        self.start("sessiond", &self.sessiond, args, home, addr).await
    }

    /// The echo baseline, serving.
    pub async fn echo(&self) -> anyhow::Result<ServerProcess> {
        let home = ScratchDir::new("echo")?;
        let addr = free_port()?;
        let args = vec!["echo-server".into(), "--listen".into(), addr.to_string().into()];
        self.start("echo-server", &self.bench, args, home, addr).await
    }

    /// Starts `program args`, under the wrapper when there is one.
    async fn start(
        &self,
        name: &'static str,
        program: &Path,
        args: Vec<OsString>,
        home: ScratchDir,
        addr: SocketAddr,
    ) -> anyhow::Result<ServerProcess> {
        match self.wrapper.split_first() {
            None => ServerProcess::start(name, program, args, home, addr).await,
            Some((wrapper, wrapper_args)) => {
                let mut wrapped = wrapper_args.to_vec();
                wrapped.push(program.into());
                wrapped.extend(args);
                ServerProcess::start(name, Path::new(wrapper), wrapped, home, addr).await
            }
        }
    }
}

/// A running child server.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    home: ScratchDir,
    ready_after: Duration,
}

impl ServerProcess {
    /// Spawns `program args` with output to `server.log` in `home`, and
    /// waits until it answers SERVING on `addr`.
    async fn start(
        name: &'static str,
        program: &Path,
        args: Vec<OsString>,
        home: ScratchDir,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let log = File::create(home.path().join("server.log")).context("creating the server log")?;
        let spawned_at = Instant::now();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the server log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut server = Self { name, child, addr, home, ready_after: Duration::ZERO };
        server.ready_after = server.wait_serving(spawned_at).await?;
        Ok(server)
    }

    /// Probes health until SERVING; answers the time since `spawned_at`.
    async fn wait_serving(&mut self, spawned_at: Instant) -> anyhow::Result<Duration> {
        let endpoint = self.endpoint().connect_timeout(Duration::from_secs(1));
        loop {
            if let Some(status) = self.child.try_wait().context("checking the child")? {
                bail!("{} exited ({status}) before serving\n{}", self.name, self.log_tail());
            }
            if probe(&endpoint).await {
                return Ok(spawned_at.elapsed());
            }
            if spawned_at.elapsed() > READY_TIMEOUT {
                bail!("{} not serving after {READY_TIMEOUT:?}\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Time from spawn to health SERVING.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn endpoint(&self) -> Endpoint {
        // An `http://ip:port` URI always parses.
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("a socket address makes a valid URI")
            .tcp_nodelay(true)
    }

    /// `count` channels, each its own HTTP/2 connection.
    pub async fn channels(&self, count: usize) -> anyhow::Result<Vec<Channel>> {
        let endpoint = self.endpoint();
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(endpoint.connect().await.with_context(|| format!("connecting to {}", self.name))?);
        }
        Ok(channels)
    }

    /// The child's process id (valgrind's, which runs the server in the
    /// same process, when under valgrind).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, for reading `/proc`.
    pub fn process(&self) -> Process {
        Process::Pid(self.child.id())
    }

    /// The child's resident set size.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.process().rss_bytes()
    }

    /// Fails when the child has exited: what it measured is void.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("checking the child")? {
            None => Ok(()),
            Some(status) => bail!("{} exited ({status}) during the run\n{}", self.name, self.log_tail()),
        }
    }

    /// The last lines of the child's output, for error messages.
    fn log_tail(&self) -> String {
        let path = self.home.path().join("server.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("---- last lines of its output ----\n{tail}")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The child may already be gone; either way, reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One readiness probe: connect and ask health for the whole server.
async fn probe(endpoint: &Endpoint) -> bool {
    let Ok(channel) = endpoint.connect().await else { return false };
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    matches!(answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}

/// A loopback address whose port was free a moment ago.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("reading the free port")
}
