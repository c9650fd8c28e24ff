//! Looking at a lock without taking it, and naming who holds it.

use std::fs::{self, File};
use std::path::Path;

use super::LockError;
use super::open::open_existing;
use crate::lock::holder::Holder;
use crate::lock::proclocks::LockTable;

/// What a read-only look at a lockfile found.
#[derive(Debug)]
pub enum Probe {
    /// No lockfile.
    Absent,
    /// Nobody holds it (our shared probe lock went with the descriptor).
    Free,
    /// Someone holds it exclusively: the open lockfile, to name the holder with
    /// [`holder_of`].
    Held(File),
}

/// The one read-only probe (`--status`, dry runs, `gc --dry-run`): open without creating,
/// then `LOCK_SH|LOCK_NB`, which fails only while someone holds the lock exclusively —
/// other probes do not count as holders, and nothing is ever taken from a run.
pub fn probe(path: &Path) -> Result<Probe, LockError> {
    let Some(file) = open_existing(path)? else {
        return Ok(Probe::Absent);
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Probe::Free),
        Err(fs::TryLockError::WouldBlock) => Ok(Probe::Held(file)),
        Err(fs::TryLockError::Error(source)) => Err(LockError::Flock {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Who holds the lock on `file`, for people to read: its metadata when the kernel's lock
/// table agrees that pid holds it; when it names another pid (the metadata is a past
/// holder's: the current one, e.g. `flock(1)`, wrote none), just that pid.
pub fn holder_of(file: &File) -> Option<Holder> {
    holder_in(file, LockTable::read().as_ref())
}

/// As [`holder_of`], with a lock table read once for many lockfiles.
pub fn holder_in(file: &File, table: Option<&LockTable>) -> Option<Holder> {
    let written = Holder::read(file);
    let Some(pids) = table.zip(file.metadata().ok()).map(|(t, m)| t.holders(&m)) else {
        return written;
    };
    match written {
        Some(h) if h.pid.is_some_and(|p| pids.contains(&p)) => Some(h),
        // The table knows nothing of this lock (read before it was taken): the metadata
        // is all there is.
        Some(h) if pids.is_empty() => Some(h),
        _ => pids.first().map(|&pid| Holder {
            version: 1,
            pid: Some(pid),
            ..Holder::default()
        }),
    }
}
