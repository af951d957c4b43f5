//! Secrets that rotate: the API keys file reloaded by a real sessiond
//! process on SIGHUP and when the file changes behind a swapped symlink, a
//! broken file refused with the previous keys kept; secrets read from
//! files; unknown `SESSIOND_*` variables refused at start-up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::auth::generate_key;
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{PATIENCE, ROLES_FILE};

/// A sessiond process, killed when dropped, logging JSON to a file.
struct Sessiond {
    child: Child,
    log: PathBuf,
    channel: Channel,
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sessiond {
    /// Starts sessiond on a free loopback port with `args`, and waits until
    /// it accepts connections and catches SIGHUP.
    async fn start(dir: &Path, args: &[&str]) -> Self {
        let log = dir.join("sessiond.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "info", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--roles-file", ROLES_FILE])
            .args(args)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file is created"))
            .spawn()
            .expect("sessiond starts");
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("a uri");
        let deadline = Instant::now() + PATIENCE;
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => panic!("sessiond did not accept connections: {err}"),
            }
        };
        let started = Self { child, log, channel };
        // SIGHUP's default action ends a process: send it only once
        // sessiond catches it (bit 0 of the caught-signals mask).
        while !started.catches_hangup() {
            assert!(Instant::now() < deadline, "sessiond never listened for SIGHUP");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started
    }

    fn catches_hangup(&self) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 == 1)
    }

    fn hang_up(&self) {
        let hup = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().expect("kill(1) runs");
        assert!(hup.success(), "SIGHUP is sent");
    }

    /// Whether a CreateSession with `key` is let in.
    async fn lets_in(&self, key: &str) -> bool {
        let mut request = tonic::Request::new(pb::CreateSessionRequest {
            kind: pb::SessionKind::WebUser.into(),
            user_id: "alice".into(),
            ..Default::default()
        });
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ASCII"));
        match SessionServiceClient::new(self.channel.clone()).create_session(request).await {
            Ok(_) => true,
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                false
            }
        }
    }

    /// Waits until `key` is let in.
    async fn until_let_in(&self, key: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.lets_in(key).await {
            assert!(Instant::now() < deadline, "the key was never let in");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the `n`th log line holding `text`, and returns it.
    async fn logged(&self, text: &str, n: usize) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().filter(|l| l.contains(text)).nth(n - 1) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "{text:?} was not logged {n} times: {log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn keys_file(hashes: &[&str]) -> String {
    let mut text = String::from("keys:\n");
    for (i, hash) in hashes.iter().enumerate() {
        text.push_str(&format!("  - {{name: k{i}, tenant: acme, role: service, hash: \"{hash}\"}}\n"));
    }
    text
}

#[tokio::test]
async fn a_key_added_to_the_keys_file_is_let_in_after_sighup_and_a_broken_file_keeps_the_previous_keys() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = dir.path().join("keys.yaml");
    let (a, a_hash) = generate_key();
    let (b, b_hash) = generate_key();
    std::fs::write(&keys, keys_file(&[&a_hash])).expect("written");
    // No polling: only SIGHUP reloads.
    let sessiond =
        Sessiond::start(dir.path(), &["--api-keys-file", keys.to_str().unwrap(), "--reload-interval", "0s"]).await;
    assert!(sessiond.lets_in(&a).await);
    assert!(!sessiond.lets_in(&b).await, "B is not configured yet");

    std::fs::write(&keys, keys_file(&[&a_hash, &b_hash])).expect("rewritten");
    sessiond.hang_up();
    sessiond.until_let_in(&b).await;
    assert!(sessiond.lets_in(&a).await, "A was kept");

    std::fs::write(&keys, "keys:\n  - {name: broken, tenant: acme, role: service, hash: \"sha256:nothex\"}\n")
        .expect("rewritten");
    sessiond.hang_up();
    let refused = sessiond.logged("reload refused", 1).await;
    assert!(refused.contains("API keys file") && refused.contains("ERROR"), "{refused}");
    assert!(sessiond.lets_in(&a).await && sessiond.lets_in(&b).await, "the previous keys stay in force");

    std::fs::write(&keys, keys_file(&[&b_hash])).expect("rewritten");
    sessiond.hang_up();
    let deadline = Instant::now() + PATIENCE;
    while sessiond.lets_in(&a).await {
        assert!(Instant::now() < deadline, "A was never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sessiond.lets_in(&b).await);
}

/// Points `link` at `target` in one step, as Kubernetes updates a mounted
/// Secret: a new symlink renamed over the old one.
fn swap_symlink(target: &Path, link: &Path) {
    let staged = link.with_file_name("..staged");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(target, &staged).expect("a symlink is made");
    std::fs::rename(&staged, link).expect("the symlink is swapped");
}

#[tokio::test]
async fn a_keys_file_swapped_behind_a_symlink_is_reloaded_without_a_signal() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, a_hash) = generate_key();
    let (b, b_hash) = generate_key();
    let write = |version: &str, text: &str| {
        let versioned = dir.path().join(version);
        std::fs::create_dir(&versioned).expect("a directory");
        std::fs::write(versioned.join("keys.yaml"), text).expect("written");
        versioned
    };
    let data = dir.path().join("..data");
    swap_symlink(&write("v1", &keys_file(&[&a_hash])), &data);
    let keys = dir.path().join("keys.yaml");
    std::os::unix::fs::symlink("..data/keys.yaml", &keys).expect("a symlink");
    let sessiond =
        Sessiond::start(dir.path(), &["--api-keys-file", keys.to_str().unwrap(), "--reload-interval", "200ms"]).await;
    assert!(sessiond.lets_in(&a).await);
    assert!(!sessiond.lets_in(&b).await);

    swap_symlink(&write("v2", &keys_file(&[&b_hash])), &data);
    sessiond.until_let_in(&b).await;
    assert!(!sessiond.lets_in(&a).await, "A is gone with the old file");

    swap_symlink(&write("v3", "keys: [ {name: broken"), &data);
    let refused = sessiond.logged("reload refused", 1).await;
    assert!(refused.contains("API keys file"), "{refused}");
    assert!(sessiond.lets_in(&b).await, "the previous keys stay in force");
    // Refused once, not at every poll.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = std::fs::read_to_string(&sessiond.log).expect("the log");
    assert_eq!(log.lines().filter(|l| l.contains("reload refused")).count(), 1, "{log}");
}

/// Runs `sessiond` with `args` and `env` until it exits; its output.
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command.args(["--log-filter", "error", "--listen", "127.0.0.1:0"]).arg("--data-dir").arg(data.path()).args(args);
    command.env_remove("SESSIOND_DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.stdin(Stdio::null()).output().expect("sessiond runs");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_mistyped_sessiond_variable_stops_start_up_naming_it_and_the_closest_setting() {
    let (started, said) = run(&["migrate"], &[("SESSIOND_API_KEY_FILE", "/etc/sessiond/keys.yaml")]);
    assert!(!started);
    assert!(said.contains("SESSIOND_API_KEY_FILE") && said.contains("did you mean SESSIOND_API_KEYS_FILE"), "{said}");
}

#[test]
fn a_database_url_file_is_a_start_up_error_naming_the_file_when_unreadable_or_given_twice() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("no-such-file");
    let (started, said) = run(&["migrate", "--database-url-file", missing.to_str().unwrap()], &[]);
    assert!(!started);
    assert!(said.contains(missing.to_str().unwrap()), "{said}");

    let url = dir.path().join("url");
    std::fs::write(&url, "postgres://sessiond:hunter2@127.0.0.1:1/sessiond\n").expect("written");
    let (started, said) = run(
        &["migrate", "--database-url-file", url.to_str().unwrap()],
        &[("SESSIOND_DATABASE_URL", "postgres://sessiond:swordfish@127.0.0.1:1/x")],
    );
    assert!(!started);
    assert!(said.contains("--database-url-file"), "{said}");
    assert!(!said.contains("hunter2") && !said.contains("swordfish"), "{said}");

    // Read, the URL is used (nothing listens on port 1) and never shown.
    let (started, said) = run(&["migrate", "--database-url-file", url.to_str().unwrap()], &[]);
    assert!(!started);
    assert!(said.contains("Postgres"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}
