//! [`ScratchDir`]: a fresh directory under the system's temporary
//! directory, removed with everything in it when dropped. Each server the
//! benchmark starts gets its own, so no run sees another's data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/sessiond-bench-<pid>-<n>-<label>`, unique within and
    /// across running benchmarks.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sessiond-bench-{}-{n}-{label}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is not worth a panic.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
