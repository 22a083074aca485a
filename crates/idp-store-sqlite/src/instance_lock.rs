//! One server per data directory.
//!
//! The embedded store keeps the rate limits, quotas and revocation cache of
//! the in-process cache in memory, so two servers on one data directory would
//! each enforce their own limits. `idp-server serve` therefore holds an
//! exclusive advisory lock on `DIR/agentidp.lock` for as long as it runs; a
//! second `serve` on the same directory stops at start with a clear message.
//!
//! One-off commands (`bootstrap`, `migrate`) do not take the lock: they may
//! run beside a serving server, and SQLite itself serializes their writes with
//! the server's (`BEGIN IMMEDIATE` and the busy timeout).
//!
//! The lock is `flock(2)` on Unix (`LockFileEx` on Windows) through std's
//! `File::try_lock`: the operating system releases it when the process exits,
//! however it exits, so a crash never leaves a stale lock behind. The file
//! itself stays; only the lock on it matters.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::database_file::private_dir_builder;

/// The name of the lock file inside the data directory.
pub const LOCK_FILE_NAME: &str = "agentidp.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    /// Another process holds the lock.
    #[error(
        "another idp-server is already serving the embedded store in {}; run several nodes on PostgreSQL + Redis instead",
        .dir.display()
    )]
    AlreadyLocked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The directory or the lock file could not be created, opened or locked.
    #[error("cannot lock the data directory {}: {cause}", .dir.display())]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// What the operating system answered.
        cause: std::io::Error,
    },
}

/// The exclusive lock on a data directory, held until this value is dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first says so.
        let _ = self.file.unlock();
    }
}

/// Takes the exclusive lock on `dir/agentidp.lock`, creating the directory
/// (private to the user, as [`crate::open`] does) and the file if missing,
/// without waiting: fails with
/// [`InstanceLockError::AlreadyLocked`] when another process (or another
/// guard in this one) holds it. Writes this process's id into the file, for
/// an operator wondering who holds it.
pub fn lock_data_dir(dir: &Path) -> Result<InstanceLock, InstanceLockError> {
    let io = |cause| InstanceLockError::Io {
        dir: dir.to_owned(),
        cause,
    };
    // Created as `open` would create it: the database will live here.
    private_dir_builder().create(dir).map_err(io)?;
    let path = dir.join(LOCK_FILE_NAME);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(InstanceLockError::AlreadyLocked {
                dir: dir.to_owned(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Only the holder writes, so the content is never two processes' ids.
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(InstanceLock { file, path })
}
