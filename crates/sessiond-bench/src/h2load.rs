//! `sessiond-bench h2load`: sessiond's cached reads next to the echo
//! baseline, driven by h2load, nghttp2's HTTP/2 loader written in C.
//!
//! The tokio loader of the other scenarios spends more CPU per call than
//! the servers it measures, so on a small machine it bounds what they can
//! show. h2load costs a few microseconds per call, and so shows how close
//! to the bare stack a call comes. It knows nothing of gRPC: the harness
//! builds each call's request frame itself (the 5-byte gRPC prefix and the
//! protobuf message, sent with `-d`), and h2load posts it again and again
//! with the headers gRPC needs.
//!
//! The echo baseline and one sessiond (embedded store, one cached WEB_USER
//! session with role Manager) run for the whole run. Every call is
//! measured in pairs: its echo, then the call, back to back (the other way
//! round every other repeat), and each pair gives one ratio per figure. A
//! shared machine's load drifts over seconds, so a ratio of two runs
//! seconds apart is steadier than one of runs a minute apart; the report
//! gives the median of each call's paired ratios over the repeats, and
//! their range. The echo is paired with itself too (`echo, again`): that
//! A/A row is the resolution of the run, since a ratio within its range
//! cannot be told from 1.00× on that machine. Each measurement is its own
//! h2load run after a warm-up run: calls/s and the mean are h2load's, p99
//! is the nearest rank over its per-request log, and server CPU per call
//! is the server's `/proc` CPU time over that run divided by the calls
//! h2load completed.
//!
//! Per-key admission has its own row: HasPrivilege again on a second
//! sessiond whose API keys file holds one key with its own concurrency
//! limit, with rate limits per key and per tenant on (set far above what
//! the run reaches, so that none is refused, but each call takes its
//! tokens), h2load calling with that key. Its ratio to the open
//! HasPrivilege of the same repeat is what authenticating the key and
//! admitting the call within its key's and tenant's limits cost.
//!
//! `--callgrind` counts instructions instead of time: every server runs
//! under `valgrind --tool=callgrind`, and each call is made a fixed number
//! of times (`--calls`) between zeroing the counters and dumping them.
//! Instruction counts do not depend on what else the machine runs, so they
//! compare two builds where timings on a shared machine cannot. valgrind
//! runs SHA-256's rounds in software, where CPUs with the SHA extensions
//! do them in hardware: the table also counts each call without them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use prost::Message as _;
use sessiond_api::v1::privilege_service_client::PrivilegeServiceClient;
use sessiond_api::v1::session_service_client::SessionServiceClient;
use sessiond_api::v1::{AuthenticateRequest, GetSessionRequest, HasPrivilegeRequest};

use crate::echo::pb::EchoRequest;
use crate::procfs::Process;
use crate::report;
use crate::scenarios::sessions::{by_token, web_user};
use crate::scratch::ScratchDir;
use crate::server::{Launcher, ServerProcess};
use crate::stats::percentile;

/// The privilege HasPrivilege and Authenticate ask for; Manager holds it
/// through editSales ⊃ viewSales ⊃ viewBasic.
const PRIVILEGE: &str = "viewBasic";

/// Bytes of the echo's payload, as in the `echo` scenario.
const PAYLOAD_BYTES: usize = 64;

/// How an h2load run is made.
#[derive(Debug, Clone, Args)]
pub struct H2loadArgs {
    /// Smoke-test lengths: one repeat, 0.3 s warm-up, 1 s per measurement.
    #[arg(long)]
    pub quick: bool,

    /// Times every call is measured with its echo (default 9, quick 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: Option<u32>,

    /// Warm-up run before each measurement (default 500ms, quick 300ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,

    /// Length of each measurement (default 2s, quick 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Print every measurement, not only the medians of the pairs.
    #[arg(long)]
    pub every_run: bool,

    /// HTTP/2 connections h2load opens (its `-c`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Concurrent streams per connection (its `-m`).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: u32,

    /// The h2load executable (scripts/bench installs Debian's
    /// nghttp2-client).
    #[arg(long, default_value = "h2load")]
    pub h2load: PathBuf,

    /// The sessiond binary. Default: `sessiond` next to this executable.
    #[arg(long)]
    pub sessiond_bin: Option<PathBuf>,

    /// A flag for the sessiond started (repeat for more).
    #[arg(long = "sessiond-arg", allow_hyphen_values = true)]
    pub sessiond_args: Vec<String>,

    /// Print the results as Markdown tables, for BENCHMARKS.md.
    #[arg(long)]
    pub markdown: bool,

    /// Count instructions per call under `valgrind --tool=callgrind`
    /// instead of measuring time (one run of `--calls` calls each).
    #[arg(long)]
    pub callgrind: bool,

    /// Calls per measurement under `--callgrind`, after a fifth as many to
    /// warm up.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,

    /// Where callgrind's dumps are kept, for `callgrind_annotate` (default:
    /// a scratch directory removed after the run). Each server's last dump
    /// is its measured calls.
    #[arg(long)]
    pub callgrind_out: Option<PathBuf>,
}

/// Rate limits of the keyed sessiond, per key and per tenant: far above
/// what one loopback run reaches, so every call takes a token and none
/// is refused.
const KEYED_RATE_LIMIT: &str = "10000000";

/// The keyed sessiond's key's own limit of calls in progress: above the
/// run's concurrent streams, so none is refused.
const KEYED_MAX_CONCURRENT_CALLS: u32 = 1000;

/// A call h2load makes, and the server that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Echo,
    /// The echo again, paired with the echo: the run's A/A comparison.
    EchoAgain,
    /// The echo sent the keyed call's `authorization` header, which it
    /// ignores: the keyed call's baseline, since decoding that header is
    /// HTTP/2's work for any server that takes a bearer key.
    EchoKeyed,
    HasPrivilege,
    GetSession,
    Authenticate,
    /// HasPrivilege with an API key held to its own limits.
    HasPrivilegeKeyed,
}

impl Call {
    /// Every call a run measures against its baseline, in order.
    const PAIRED: [Call; 6] = [
        Call::EchoAgain,
        Call::EchoKeyed,
        Call::HasPrivilege,
        Call::GetSession,
        Call::Authenticate,
        Call::HasPrivilegeKeyed,
    ];

    /// Every call: the echo, then each one paired with a baseline.
    fn all() -> impl Iterator<Item = Call> {
        [Call::Echo].into_iter().chain(Call::PAIRED)
    }

    /// The echo this call is compared with: the one sent the same headers.
    fn baseline(self) -> Call {
        match self {
            Call::HasPrivilegeKeyed => Call::EchoKeyed,
            _ => Call::Echo,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Call::Echo => "echo",
            Call::EchoAgain => "echo, again",
            Call::EchoKeyed => "echo, key header",
            Call::HasPrivilege => "has-privilege",
            Call::GetSession => "get-session",
            Call::Authenticate => "authenticate",
            Call::HasPrivilegeKeyed => "has-privilege, key limits",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Call::Echo | Call::EchoAgain | Call::EchoKeyed => "/sessiond.bench.v1.EchoService/Echo",
            Call::HasPrivilege | Call::HasPrivilegeKeyed => "/sessiond.v1.PrivilegeService/HasPrivilege",
            Call::GetSession => "/sessiond.v1.SessionService/GetSession",
            Call::Authenticate => "/sessiond.v1.SessionService/Authenticate",
        }
    }

    /// The request message, encoded, for a session holding `token`.
    fn message(self, token: &str) -> Vec<u8> {
        match self {
            Call::Echo | Call::EchoAgain | Call::EchoKeyed => {
                EchoRequest { payload: vec![b'x'; PAYLOAD_BYTES] }.encode_to_vec()
            }
            Call::HasPrivilege | Call::HasPrivilegeKeyed => {
                HasPrivilegeRequest { session: by_token(token), privilege: PRIVILEGE.into() }.encode_to_vec()
            }
            Call::GetSession => GetSessionRequest { session: by_token(token) }.encode_to_vec(),
            Call::Authenticate => {
                AuthenticateRequest { token: token.to_owned(), privileges: vec![PRIVILEGE.into()], min_sequence: 0 }
                    .encode_to_vec()
            }
        }
    }
}

/// A gRPC length-prefixed message: uncompressed, then the length in four
/// big-endian bytes, then the message.
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let len = u32::try_from(message.len()).expect("a request message is far below 4 GiB");
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// What one h2load run of one call came to.
#[derive(Debug, Clone)]
struct Row {
    repeat: u32,
    /// The pair this run belongs to, named by its measured call.
    pair: Call,
    /// The call made: `pair` or its baseline.
    call: Call,
    calls: u64,
    calls_per_sec: f64,
    mean: Duration,
    p99: Duration,
    server_cpu_per_call: Duration,
    loader_cpu_per_call: Duration,
}

/// The lengths of a run, with the defaults filled in.
#[derive(Debug, Clone, Copy)]
struct Lengths {
    repeats: u32,
    warmup: Duration,
    measure: Duration,
}

impl H2loadArgs {
    fn lengths(&self) -> Lengths {
        let pick = |given: Option<Duration>, full: u64, quick: u64| {
            given.unwrap_or(Duration::from_millis(if self.quick { quick } else { full }))
        };
        Lengths {
            repeats: self.repeats.unwrap_or(if self.quick { 1 } else { 9 }),
            warmup: pick(self.warmup, 500, 300),
            measure: pick(self.duration, 2_000, 1_000),
        }
    }
}

/// Runs the interleaved measurements and prints the report.
pub async fn run(args: H2loadArgs) -> anyhow::Result<()> {
    let lengths = args.lengths();
    let dir = ScratchDir::new("h2load")?;
    let mut launcher = Launcher::new(args.sessiond_bin.clone(), args.sessiond_args.clone())?;
    let dumps = args.callgrind_out.as_deref().unwrap_or(dir.path());
    if args.callgrind {
        launcher = launcher.with_wrapper(callgrind_wrapper(dumps));
    }
    let echo = launcher.echo().await?;
    let mut sessiond = launcher.sessiond(&[]).await?;
    let (key, keyed_flags) = keyed_settings(dir.path())?;
    let keyed_flags: Vec<&str> = keyed_flags.iter().map(String::as_str).collect();
    let mut keyed = launcher.sessiond(&keyed_flags).await?;
    let token = create_checked_session(&sessiond, None).await?;
    let keyed_token = create_checked_session(&keyed, Some(&key)).await?;
    let mut targets = Vec::new();
    for call in Call::all() {
        let (server, token, key) = match call {
            Call::Echo | Call::EchoAgain => (&echo, token.as_str(), None),
            Call::EchoKeyed => (&echo, token.as_str(), Some(key.as_str())),
            Call::HasPrivilegeKeyed => (&keyed, keyed_token.as_str(), Some(key.as_str())),
            _ => (&sessiond, token.as_str(), None),
        };
        let body = dir.path().join(format!("{}.bin", call.name().replace([' ', ','], "")));
        std::fs::write(&body, grpc_frame(&call.message(token))).context("writing a request frame")?;
        targets.push(H2load { args: &args, server, call, body, key, dumps });
    }
    let target = |call: Call| targets.iter().find(|t| t.call == call).expect("every call has its h2load run");
    if args.callgrind {
        let mut counts = Vec::new();
        // The echo again would count what the echo does.
        for call in Call::all().filter(|&call| call != Call::EchoAgain) {
            counts.push((call, target(call).instructions(args.calls)?));
        }
        println!("{}", render_instructions(&args, &counts));
        return Ok(());
    }
    let mut rows = Vec::new();
    for repeat in 1..=lengths.repeats {
        for (index, pair) in Call::PAIRED.into_iter().enumerate() {
            // The baseline first in one repeat, second in the next, so
            // that neither side of a pair always runs on a warmer machine.
            let mut order = [pair.baseline(), pair];
            if (repeat as usize + index).is_multiple_of(2) {
                order.reverse();
            }
            for call in order {
                let run = target(call);
                run.once(Amount::For(lengths.warmup), None)?;
                let log = dir.path().join("requests.log");
                let measured = run.once(Amount::For(lengths.measure), Some(&log))?;
                rows.push(measured.row(repeat, pair, call, &log)?);
                std::fs::remove_file(&log).context("removing h2load's request log")?;
            }
        }
    }
    // A server that died mid-run failed its h2load run; one that died
    // after its last would have measured nothing afterwards either.
    drop(targets);
    sessiond.check_alive()?;
    keyed.check_alive()?;
    println!("{}", render(&args, lengths, &rows));
    Ok(())
}

/// The key the keyed sessiond knows, and that sessiond's flags: a keys
/// file (written in `dir`) holding that one key with its own limit of
/// calls in progress, and rate limits per key and per tenant.
fn keyed_settings(dir: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let (key, hash) = sessiond::auth::generate_key();
    let keys_file = dir.join("keys.yaml");
    let keys = format!(
        "keys:\n  - {{ name: bench, tenant: bench, role: service, hash: \"{hash}\", max_concurrent_calls: {KEYED_MAX_CONCURRENT_CALLS} }}\n"
    );
    std::fs::write(&keys_file, keys).context("writing the keys file")?;
    let flags = vec![
        "--api-keys-file".into(),
        keys_file.display().to_string(),
        "--rate-limit-per-key".into(),
        KEYED_RATE_LIMIT.into(),
        "--rate-limit-per-tenant".into(),
        KEYED_RATE_LIMIT.into(),
    ];
    Ok((key, flags))
}

/// `message` as a request, with `key` in its `authorization` when given.
fn with_key<T>(message: T, key: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse()?);
    }
    Ok(request)
}

/// Creates the session every call names, and checks over tonic that each
/// call answers what h2load's copies of it should: granted, all granted.
async fn create_checked_session(sessiond: &ServerProcess, key: Option<&str>) -> anyhow::Result<String> {
    let channel = sessiond.channels(1).await?.remove(0);
    let mut sessions = SessionServiceClient::new(channel.clone());
    let token = sessions.create_session(with_key(web_user(0), key)?).await?.into_inner().token;
    let granted = PrivilegeServiceClient::new(channel)
        .has_privilege(with_key(HasPrivilegeRequest { session: by_token(&token), privilege: PRIVILEGE.into() }, key)?)
        .await?
        .into_inner()
        .granted;
    sessions.get_session(with_key(GetSessionRequest { session: by_token(&token) }, key)?).await?;
    let authenticate =
        AuthenticateRequest { token: token.clone(), privileges: vec![PRIVILEGE.into()], min_sequence: 0 };
    let authenticated = sessions.authenticate(with_key(authenticate, key)?).await?.into_inner();
    if !granted || !authenticated.all_granted {
        bail!("MISMATCH: a Manager session does not hold {PRIVILEGE}");
    }
    Ok(token)
}

/// One call's h2load runs against one server.
struct H2load<'a> {
    args: &'a H2loadArgs,
    server: &'a ServerProcess,
    call: Call,
    /// The file holding the request frame.
    body: PathBuf,
    /// The API key to call with, if any.
    key: Option<&'a str>,
    /// Where callgrind writes its dumps, under `--callgrind`.
    dumps: &'a Path,
}

/// How much one h2load run does.
#[derive(Debug, Clone, Copy)]
enum Amount {
    /// As many calls as fit in this time.
    For(Duration),
    /// This many calls.
    Calls(u64),
}

/// What one h2load run printed, and the CPU used meanwhile.
struct Measured {
    output: Output,
    server_cpu: Duration,
    loader_cpu: Duration,
}

impl H2load<'_> {
    /// Runs h2load for `amount`, writing its per-request log to `log` when
    /// given; fails when it fails or when any call did not answer a message.
    fn once(&self, amount: Amount, log: Option<&Path>) -> anyhow::Result<Measured> {
        let url = format!("http://{}{}", self.server.addr(), self.call.path());
        let mut command = Command::new(&self.args.h2load);
        match amount {
            Amount::For(length) => command.arg(format!("--duration={}ms", length.as_millis().max(1))),
            Amount::Calls(calls) => command.arg(format!("--requests={calls}")),
        };
        command
            .arg(format!("--clients={}", self.args.connections))
            .arg(format!("--max-concurrent-streams={}", self.args.streams))
            .arg("--threads=1")
            .arg(format!("--data={}", self.body.display()))
            .args(["--header=content-type: application/grpc", "--header=te: trailers"]);
        if let Some(key) = self.key {
            command.arg(format!("--header=authorization: Bearer {key}"));
        }
        if let Some(log) = log {
            command.arg(format!("--log-file={}", log.display()));
        }
        command.arg(url);
        let server_before = self.server.process().cpu_time()?;
        let loader_before = Process::This.reaped_children_cpu_time()?;
        let output = command.output().with_context(|| {
            format!("running {} (install nghttp2-client, or pass --h2load)", self.args.h2load.display())
        })?;
        let server_cpu = self.server.process().cpu_time()?.saturating_sub(server_before);
        let loader_cpu = Process::This.reaped_children_cpu_time()?.saturating_sub(loader_before);
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("h2load failed ({}): {}\n{stdout}", output.status, String::from_utf8_lossy(&output.stderr));
        }
        let parsed = Output::parse(&stdout).with_context(|| format!("reading h2load's report:\n{stdout}"))?;
        parsed.check(self.call).with_context(|| format!("h2load's report:\n{stdout}"))?;
        Ok(Measured { output: parsed, server_cpu, loader_cpu })
    }

    /// The instructions the server (under callgrind) executes per call:
    /// a fifth of `calls` to warm up, then the counters zeroed, `calls`
    /// made, and the counters dumped.
    fn instructions(&self, calls: u64) -> anyhow::Result<Instructions> {
        self.once(Amount::Calls((calls / 5).max(1)), None)?;
        let pid = self.server.pid();
        callgrind_control("-z", pid)?;
        let measured = self.once(Amount::Calls(calls), None)?;
        callgrind_control("-d", pid)?;
        let dump = last_dump(self.dumps, pid)?;
        let text = std::fs::read_to_string(&dump).with_context(|| format!("reading {}", dump.display()))?;
        let total = dump_total(&text).with_context(|| format!("no totals in {}", dump.display()))?;
        let sha256 = sha256_rounds(&dump)?;
        eprintln!("callgrind: {} counted in {}", self.call.name(), dump.display());
        let done = measured.output.done.max(1);
        Ok(Instructions { total: total / done, sha256: sha256 / done })
    }
}

/// A call's instructions, and those of them spent in SHA-256's rounds
/// (hashing the token and the API key). valgrind runs them in software;
/// a CPU with the SHA extensions (`sha_ni` in /proc/cpuinfo), which the
/// `sha2` crate uses when present, runs them in a few dozen instructions
/// a block: the count without them is the closer to the CPU's work there.
#[derive(Debug, Clone, Copy)]
struct Instructions {
    total: u64,
    sha256: u64,
}

/// The inclusive instructions of `sha2::sha256::compress256` in `dump`,
/// as `callgrind_annotate` reports them (0 when it never ran).
fn sha256_rounds(dump: &Path) -> anyhow::Result<u64> {
    let output = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .context("running callgrind_annotate (install valgrind)")?;
    if !output.status.success() {
        bail!("callgrind_annotate {} failed ({})", dump.display(), output.status);
    }
    Ok(compress_cost(&String::from_utf8_lossy(&output.stdout)))
}

/// The cost on the function's own line (`file:function [object]`; the
/// lines without an object are its inlined parts, already inside it).
fn compress_cost(annotated: &str) -> u64 {
    annotated
        .lines()
        .filter(|line| line.contains("sha2::sha256::compress256 [") && line.trim_end().ends_with(']'))
        .filter_map(|line| line.split_whitespace().next()?.replace(',', "").parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// The command every server runs under with `--callgrind`, its dumps
/// written to `dumps` as `callgrind.<pid>.<n>`.
fn callgrind_wrapper(dumps: &Path) -> Vec<OsString> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        format!("--callgrind-out-file={}/callgrind.%p", dumps.display()).into(),
    ]
}

/// Runs `callgrind_control <flag> <pid>`: `-z` zeroes the counters, `-d`
/// dumps them.
fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running callgrind_control (install valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {flag} {pid} failed ({status})");
    }
    Ok(())
}

/// The latest dump of process `pid` in `dumps`.
fn last_dump(dumps: &Path, pid: u32) -> anyhow::Result<PathBuf> {
    let prefix = format!("callgrind.{pid}.");
    let mut latest: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(dumps).context("listing callgrind's dumps")? {
        let path = entry?.path();
        let part = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(&prefix)?.parse().ok());
        if let Some(part) = part
            && latest.as_ref().is_none_or(|(seen, _)| part > *seen)
        {
            latest = Some((part, path));
        }
    }
    let (_, path) = latest.with_context(|| format!("no callgrind dump of process {pid}"))?;
    Ok(path)
}

/// The `totals:` (or, without it, `summary:`) count of a callgrind dump.
fn dump_total(text: &str) -> Option<u64> {
    let line = |prefix: &str| {
        text.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

/// The instructions per call of every call, and each one's ratio to the
/// echo's.
fn render_instructions(args: &H2loadArgs, counts: &[(Call, Instructions)]) -> String {
    let echo = |call: Call| {
        let baseline = call.baseline();
        counts.iter().find(|(c, _)| *c == baseline).map_or(Instructions { total: 0, sha256: 0 }, |(_, ir)| *ir)
    };
    let headers = ["call", "Ir/call", "vs echo", "SHA-256 rounds", "Ir/call without them", "vs echo"].map(String::from);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let ratio = |ir: u64, echo: u64| format!("{:.2}×", ir as f64 / echo.max(1) as f64);
    let body = counts
        .iter()
        .map(|(call, ir)| {
            let echo = echo(*call);
            let without = ir.total - ir.sha256;
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let thousands = |n: u64| report::thousands(n as f64);
            vec![
                call.name().to_owned(),
                thousands(ir.total),
                ratio(ir.total, echo.total),
                thousands(ir.sha256),
                thousands(without),
                ratio(without, echo.total - echo.sha256),
            ]
        })
        .collect();
    let mut out = format!(
        "callgrind: instructions per call over {} calls each ({} connections × {} streams); load average {}\n\n",
        args.calls,
        args.connections,
        args.streams,
        load_average(),
    );
    out.push_str(&report::table(&headers, body, args.markdown));
    out.push_str(BASELINES);
    out
}

/// How each call's ratio is taken, under every table.
const BASELINES: &str = "\nEach call against the echo sent the same headers: the keyed call against \
                         `echo, key header`, every other against `echo`.\n";

impl Measured {
    fn row(&self, repeat: u32, pair: Call, call: Call, log: &Path) -> anyhow::Result<Row> {
        let mut latencies = request_latencies(log)?;
        latencies.sort_unstable();
        let calls = self.output.done.max(1);
        let per_call = |cpu: Duration| cpu / u32::try_from(calls).unwrap_or(u32::MAX);
        Ok(Row {
            repeat,
            pair,
            call,
            calls: self.output.done,
            calls_per_sec: self.output.calls_per_sec,
            mean: self.output.mean,
            p99: percentile(&latencies, 0.99),
            server_cpu_per_call: per_call(self.server_cpu),
            loader_cpu_per_call: per_call(self.loader_cpu),
        })
    }
}

/// The figures read from h2load's report.
#[derive(Debug, Clone, PartialEq)]
struct Output {
    calls_per_sec: f64,
    done: u64,
    succeeded: u64,
    /// Bytes of response bodies (DATA frames).
    data_bytes: u64,
    mean: Duration,
}

impl Output {
    /// Reads `finished in 1.00s, 1234.00 req/s, …`, `requests: … done, …
    /// succeeded, …`, `traffic: … (N) data` and the mean of `time for
    /// request:`.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let line = |prefix: &str| {
            text.lines().map(str::trim).find(|l| l.starts_with(prefix)).with_context(|| format!("no `{prefix}` line"))
        };
        let finished = line("finished in")?;
        let calls_per_sec = finished
            .split(", ")
            .find_map(|part| part.strip_suffix(" req/s"))
            .and_then(|n| n.parse().ok())
            .context("no req/s")?;
        let requests = line("requests:")?;
        let count = |what: &str| -> anyhow::Result<u64> {
            requests
                .trim_start_matches("requests:")
                .split(',')
                .find_map(|part| part.trim().strip_suffix(what).map(str::trim))
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no `{what}` count"))
        };
        let traffic = line("traffic:")?;
        let data_bytes = traffic
            .rsplit(", ")
            .next()
            .and_then(|part| part.strip_suffix(" data"))
            .and_then(|part| part.split_once('(')?.1.strip_suffix(')')?.parse().ok())
            .context("no data bytes in `traffic:`")?;
        let timing = line("time for request:")?;
        let mean = timing
            .trim_start_matches("time for request:")
            .split_whitespace()
            .nth(2)
            .and_then(parse_h2load_duration)
            .context("no mean in `time for request:`")?;
        Ok(Self { calls_per_sec, done: count("done")?, succeeded: count("succeeded")?, data_bytes, mean })
    }

    /// Every call answered HTTP 2xx with a message: a gRPC error is 200
    /// too, but carries no message, only trailers, and the smallest answer
    /// measured here (HasPrivilege's `granted: true`) is a 7-byte frame.
    fn check(&self, call: Call) -> anyhow::Result<()> {
        if self.done == 0 {
            bail!("MISMATCH: no {} call completed", call.name());
        }
        if self.succeeded != self.done {
            bail!(
                "MISMATCH: {} of {} {} calls were not answered 2xx",
                self.done - self.succeeded,
                self.done,
                call.name()
            );
        }
        if self.data_bytes < self.done * 7 {
            bail!("MISMATCH: some {} calls were answered without a message (a gRPC error)", call.name());
        }
        Ok(())
    }
}

/// An h2load duration: `123us`, `1.23ms`, `1.2s`.
fn parse_h2load_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
}

/// The latency of every request of h2load's `--log-file` (tab-separated:
/// start in µs since the epoch, HTTP status, µs until the response ended),
/// in nanoseconds.
fn request_latencies(log: &Path) -> anyhow::Result<Vec<u64>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    text.lines()
        .map(|line| {
            let micros: u64 = line.split('\t').nth(2).and_then(|f| f.trim().parse().ok()).context("a log line")?;
            Ok(micros * 1_000)
        })
        .collect()
}

/// A pair's ratios, measured call over baseline: calls/s, p99 and server
/// CPU per call.
#[derive(Debug, Clone, Copy)]
struct Ratios {
    calls_per_sec: f64,
    p99: f64,
    server_cpu: f64,
}

impl Ratios {
    fn of(measured: &Row, baseline: &Row) -> Self {
        Self {
            calls_per_sec: measured.calls_per_sec / baseline.calls_per_sec,
            p99: measured.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
            server_cpu: measured.server_cpu_per_call.as_secs_f64() / baseline.server_cpu_per_call.as_secs_f64(),
        }
    }
}

/// Every repeat's ratios of `pair`, in repeat order.
fn paired_ratios(rows: &[Row], pair: Call) -> Vec<Ratios> {
    let of_pair =
        |repeat: u32, call: Call| rows.iter().find(|r| r.repeat == repeat && r.pair == pair && r.call == call);
    rows.iter()
        .filter(|r| r.pair == pair && r.call == pair)
        .filter_map(|measured| Some(Ratios::of(measured, of_pair(measured.repeat, pair.baseline())?)))
        .collect()
}

/// The median of some values (the mean of the two middle ones when even),
/// and their range.
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { f64::midpoint(values[n / 2 - 1], values[n / 2]) };
    (median, values[0], values[n - 1])
}

/// `1.07× (0.98–1.21)`: a median and its range.
fn ratio_cell(values: Vec<f64>) -> String {
    let (median, low, high) = median_and_range(values);
    format!("{median:.2}× ({low:.2}–{high:.2})")
}

/// The medians of every call's paired ratios, the A/A resolution, and
/// every measurement with `--every-run`.
fn render(args: &H2loadArgs, lengths: Lengths, rows: &[Row]) -> String {
    let headers =
        ["call", "pairs", "calls/s", "server CPU/call", "calls/s vs echo", "p99 vs echo", "server CPU/call vs echo"]
            .map(String::from);
    let body = Call::PAIRED
        .iter()
        .map(|&pair| {
            let ratios = paired_ratios(rows, pair);
            let measured: Vec<&Row> = rows.iter().filter(|r| r.pair == pair && r.call == pair).collect();
            let (calls_per_sec, ..) = median_and_range(measured.iter().map(|r| r.calls_per_sec).collect());
            let (cpu, ..) = median_and_range(measured.iter().map(|r| r.server_cpu_per_call.as_secs_f64()).collect());
            vec![
                pair.name().to_owned(),
                ratios.len().to_string(),
                report::thousands(calls_per_sec),
                micros(Duration::from_secs_f64(cpu)),
                ratio_cell(ratios.iter().map(|r| r.calls_per_sec).collect()),
                ratio_cell(ratios.iter().map(|r| r.p99).collect()),
                ratio_cell(ratios.iter().map(|r| r.server_cpu).collect()),
            ]
        })
        .collect();
    let mut out = format!(
        "h2load: {} connections × {} streams; {} repeat(s) of every pair, {:?} per measurement after a {:?} warm-up; load average {}\n\n",
        args.connections,
        args.streams,
        lengths.repeats,
        lengths.measure,
        lengths.warmup,
        load_average(),
    );
    out.push_str("Medians of the paired ratios over the repeats, their range in brackets:\n\n");
    out.push_str(&report::table(&headers, body, args.markdown));
    out.push_str(BASELINES);
    let (_, low, high) = median_and_range(paired_ratios(rows, Call::EchoAgain).iter().map(|r| r.server_cpu).collect());
    out.push_str(&format!(
        "The echo against itself (`echo, again`) spread {low:.2}–{high:.2}× in server CPU per call: \
         a ratio inside that range cannot be told from 1.00× in this run.\n"
    ));
    out.push_str(&render_key_limits(args, rows));
    if args.every_run {
        out.push_str("\nEvery measurement:\n\n");
        out.push_str(&render_runs(args, rows));
    }
    out
}

/// Every measurement, in the order made.
fn render_runs(args: &H2loadArgs, rows: &[Row]) -> String {
    let headers = ["repeat", "pair", "call", "calls", "calls/s", "mean", "p99", "server CPU/call", "h2load CPU/call"]
        .map(String::from);
    let body = rows
        .iter()
        .map(|row| {
            vec![
                row.repeat.to_string(),
                row.pair.name().to_owned(),
                row.call.name().to_owned(),
                row.calls.to_string(),
                report::thousands(row.calls_per_sec),
                report::latency(row.mean),
                report::latency(row.p99),
                micros(row.server_cpu_per_call),
                micros(row.loader_cpu_per_call),
            ]
        })
        .collect();
    report::table(&headers, body, args.markdown)
}

/// What per-key admission cost: in each repeat, the keyed HasPrivilege's
/// ratio to its echo over the open HasPrivilege's ratio to its echo.
fn render_key_limits(args: &H2loadArgs, rows: &[Row]) -> String {
    let open = paired_ratios(rows, Call::HasPrivilege);
    let keyed = paired_ratios(rows, Call::HasPrivilegeKeyed);
    let over = |pick: fn(&Ratios) -> f64| ratio_cell(keyed.iter().zip(&open).map(|(k, o)| pick(k) / pick(o)).collect());
    let headers = ["calls/s", "p99", "server CPU/call"].map(String::from);
    let body = vec![vec![over(|r| r.calls_per_sec), over(|r| r.p99), over(|r| r.server_cpu)]];
    let mut out = String::from(
        "\nHasPrivilege with key limits against the open HasPrivilege (each against its own echo, per repeat):\n\n",
    );
    out.push_str(&report::table(&headers, body, args.markdown));
    out
}

/// Microseconds with one decimal.
fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// `/proc/loadavg`'s three averages, or `?`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// h2load 1.52's report of a short run.
    const REPORT: &str = "\
starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
Warm-up phase is over for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 1.00s, 81234.00 req/s, 4.10MB/s
requests: 81234 total, 81284 started, 81234 done, 81234 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 81234 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4.10MB (4298765) total, 1.20MB (1257890) headers (space savings 96.35%), 555.30KB (568638) data
                     min         max         mean         sd        +/- sd
time for request:       98us      5.12ms       603us       120us    80.00%
time for connect:      140us       150us       145us         5us   100.00%
time to 1st byte:     1.20ms      1.30ms      1.25ms        50us   100.00%
req/s           :   40500.12    40734.00    40617.06      117.00   100.00%
";

    #[test]
    fn an_h2load_report_reads_as_its_figures() {
        let output = Output::parse(REPORT).unwrap();
        assert_eq!(
            output,
            Output {
                calls_per_sec: 81234.0,
                done: 81234,
                succeeded: 81234,
                data_bytes: 568638,
                mean: Duration::from_micros(603),
            }
        );
        output.check(Call::HasPrivilege).unwrap();
    }

    #[test]
    fn answers_without_a_message_are_a_mismatch() {
        let errors = REPORT.replace("(568638) data", "(0) data");
        let err = Output::parse(&errors).unwrap().check(Call::GetSession).unwrap_err();
        assert!(err.to_string().contains("MISMATCH"), "{err}");
    }

    #[test]
    fn a_callgrind_dump_reads_as_its_total() {
        let dump =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123\nfn=(1) main\n5 6\ntotals: 456789\n";
        assert_eq!(dump_total(dump), Some(456_789));
        assert_eq!(dump_total("events: Ir\nsummary: 123\n"), Some(123));
        assert_eq!(dump_total("events: Ir\n"), None);
    }

    #[test]
    fn sha256_rounds_are_the_compress_functions_own_line() {
        let annotated = "\
17,930,000 ( 5.06%)  /src/digest.rs:sessiond::service::Service::find::{{closure}}
17,385,000 ( 4.91%)  /src/sha256.rs:sha2::sha256::compress256 [/bin/sessiond]
 8,315,000 ( 2.35%)  /src/sha256/soft.rs:sha2::sha256::compress256
";
        assert_eq!(compress_cost(annotated), 17_385_000);
        assert_eq!(compress_cost("1,000 (100.0%)  ???:main [/bin/echo]\n"), 0);
    }

    #[test]
    fn h2load_durations_read_in_every_unit() {
        assert_eq!(parse_h2load_duration("603us"), Some(Duration::from_micros(603)));
        assert_eq!(parse_h2load_duration("5.12ms"), Some(Duration::from_micros(5120)));
        assert_eq!(parse_h2load_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_h2load_duration("fast"), None);
    }

    fn run(repeat: u32, pair: Call, call: Call, calls_per_sec: f64, cpu_micros: u64) -> Row {
        Row {
            repeat,
            pair,
            call,
            calls: 1000,
            calls_per_sec,
            mean: Duration::from_micros(500),
            p99: Duration::from_micros(cpu_micros * 100),
            server_cpu_per_call: Duration::from_micros(cpu_micros),
            loader_cpu_per_call: Duration::from_micros(4),
        }
    }

    #[test]
    fn each_call_is_divided_by_the_echo_of_its_own_pair() {
        let rows = [
            run(1, Call::GetSession, Call::Echo, 100.0, 10),
            run(1, Call::GetSession, Call::GetSession, 80.0, 12),
            // Another pair's echo, slower, must not be the baseline.
            run(1, Call::HasPrivilege, Call::Echo, 50.0, 20),
            run(1, Call::HasPrivilege, Call::HasPrivilege, 40.0, 22),
            run(2, Call::GetSession, Call::GetSession, 90.0, 15),
            run(2, Call::GetSession, Call::Echo, 100.0, 10),
        ];
        let ratios = paired_ratios(&rows, Call::GetSession);
        let cpu: Vec<String> = ratios.iter().map(|r| format!("{:.3}", r.server_cpu)).collect();
        let calls: Vec<String> = ratios.iter().map(|r| format!("{:.3}", r.calls_per_sec)).collect();
        assert_eq!(cpu, ["1.200", "1.500"]);
        assert_eq!(calls, ["0.800", "0.900"]);
        assert_eq!(format!("{:.3}", paired_ratios(&rows, Call::HasPrivilege)[0].server_cpu), "1.100");
    }

    #[test]
    fn the_echo_paired_with_itself_is_the_a_a_ratio() {
        let rows =
            [run(1, Call::EchoAgain, Call::Echo, 100.0, 10), run(1, Call::EchoAgain, Call::EchoAgain, 100.0, 11)];
        assert_eq!(format!("{:.3}", paired_ratios(&rows, Call::EchoAgain)[0].server_cpu), "1.100");
    }

    #[test]
    fn a_median_is_the_middle_value_or_the_mean_of_the_two() {
        assert_eq!(median_and_range(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_and_range(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(median_and_range(Vec::new()).0.is_nan());
    }

    #[test]
    fn a_request_frame_is_the_grpc_prefix_and_the_message() {
        assert_eq!(grpc_frame(b"ab"), [0, 0, 0, 0, 2, b'a', b'b']);
        let decoded = HasPrivilegeRequest::decode(&grpc_frame(&Call::HasPrivilege.message("sdt_x"))[5..]).unwrap();
        assert_eq!(decoded.privilege, PRIVILEGE);
    }
}
