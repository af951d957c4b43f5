//! What every test binary shares: the roles file the test servers load,
//! how long a test waits before it fails instead of hanging, and waiting
//! on a condition instead of sleeping a fixed time.
//!
//! Include it with `#[path = "support/fixtures.rs"] mod fixtures;`.

// Each test binary uses its own part of this support.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// The roles file every test server loads (the one shipped in `config/`).
pub const ROLES_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/roles.yaml");

/// How long a test waits for an answer that should come at once before it
/// fails instead of hanging. Real time, never used to let time pass.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `check` answers `Some`, looking again every few
/// milliseconds, and answers it; fails the test naming `what` after
/// [`PATIENCE`]. However fast or slow the machine, the test waits as long
/// as the condition takes, never a fixed time.
pub async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(POLL).await;
    }
}
