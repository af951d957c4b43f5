//! One process per embedded store: an exclusive OS file lock on
//! `sessiond.lock` in the store's directory, held for as long as the store
//! is open (the process's life, in the server).
//!
//! Two processes writing one SQLite file would each keep a cache the other
//! cannot invalidate, and each would end the other's request-scoped sessions
//! as left over from a crash. The lock is `flock(2)`, so the kernel releases
//! it when its holder exits, however it exits: no stale lock survives a
//! crash. The holder writes its process id into the file, so a refused
//! start can name it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE_NAME: &str = "sessiond.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(super) struct DirectoryLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    InUse {
        dir: PathBuf,
        holder: Option<u32>,
    },
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InUse { dir, holder: Some(pid) } => write!(
                f,
                "the data directory {} is in use by another sessiond (process {pid}); one process per data directory",
                dir.display()
            ),
            LockError::InUse { dir, holder: None } => write!(
                f,
                "the data directory {} is in use by another sessiond; one process per data directory",
                dir.display()
            ),
            LockError::Io { dir, source } => write!(f, "cannot lock the data directory {}: {source}", dir.display()),
        }
    }
}

impl std::error::Error for LockError {}

impl DirectoryLock {
    /// Takes the lock of `dir` without waiting.
    pub(super) fn acquire(dir: &Path) -> Result<DirectoryLock, LockError> {
        let io = |source| LockError::Io { dir: dir.to_owned(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE_NAME))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::InUse { dir: dir.to_owned(), holder: holder(&mut file) });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who holds it. Failing to is no reason not to start.
        let recorded = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        if let Err(err) = recorded {
            tracing::warn!(error = %err, "could not record this process in the data directory's lock file");
        }
        Ok(DirectoryLock { _file: file })
    }
}

/// The process id the holder recorded, when it did.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let first = DirectoryLock::acquire(dir.path()).expect("the first lock is taken");
        match DirectoryLock::acquire(dir.path()) {
            Err(LockError::InUse { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(first);
        DirectoryLock::acquire(dir.path()).expect("the lock is free again");
    }
}
