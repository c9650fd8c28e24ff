//! `ccci-rundir gc`: remove run directories nobody uses any more.
//!
//! A run directory is removed only when its `.run.lock` is free — taken here without
//! waiting, and held for the whole removal — and its newest mtime (the directory and
//! `state/`) is older than the limit. A held run is never removed, however old.
//!
//! Removal never follows a symlink: `abra/servers` points at the canonical tree, and
//! deleting through it would destroy every app's config. std's `remove_dir_all` unlinks
//! symlinks instead of descending into them (it works with `openat`/`unlinkat` and
//! `O_NOFOLLOW`). The directory is first renamed to a `gc~` name that is not a valid run
//! id, while the lock is held, so a run starting with the same id at that moment gets a
//! fresh directory instead of one being deleted under it; leftovers of an interrupted
//! gc are finished off by the next.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::applock::{self, Verified, Wait};
use crate::duration;
use crate::holder::pid_and_run;
use crate::rundir::{RUN_LOCK, RunsDir};
use crate::runid::RunId;

const TRASH_PREFIX: &str = "gc~";

#[derive(Debug, Serialize)]
pub struct GcEntry {
    pub run_id: String,
    pub path: String,
    /// Seconds since the run last changed anything.
    pub idle_s: u64,
    /// Why it was kept (`held by pid P`, `recent`, ...) or why removal failed.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub version: u32,
    pub removed: Vec<GcEntry>,
    pub kept: Vec<GcEntry>,
    /// Runs whose removal failed (also the reason the exit status is 1).
    pub failed: Vec<GcEntry>,
}

pub fn gc(runs: &RunsDir, older_than: Duration, dry_run: bool) -> io::Result<GcReport> {
    let mut report = GcReport {
        version: 1,
        ..GcReport::default()
    };
    if !runs.check_existing().map_err(io::Error::other)? {
        return Ok(report);
    }
    let mut entries: Vec<_> = fs::read_dir(runs.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let Some(name) = name.to_str() else { continue };
        let path = runs.path().join(name);
        if name.starts_with(TRASH_PREFIX) {
            if !dry_run {
                let _ = fs::remove_dir_all(&path);
            }
            continue;
        }
        let Ok(id) = RunId::parse(name) else { continue };
        let mut entry = GcEntry {
            run_id: id.to_string(),
            path: path.display().to_string(),
            idle_s: 0,
            reason: None,
        };
        // Never follow a symlink in the runs dir, nor treat a file as a run.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            entry.reason = Some("not a directory (not followed)".into());
            report.kept.push(entry);
            continue;
        }
        // Age first: creating a missing .run.lock below would make the run look new.
        let idle = idle_for(&path);
        entry.idle_s = idle.as_secs();
        if idle < older_than {
            entry.reason = Some(format!("recent (idle {})", duration::format(idle)));
            report.kept.push(entry);
            continue;
        }
        match remove_if_free(runs, &path, &id, dry_run) {
            Ok(None) => report.removed.push(entry),
            Ok(Some(reason)) => {
                entry.reason = Some(reason);
                report.kept.push(entry);
            }
            Err(e) => {
                entry.reason = Some(e.to_string());
                report.failed.push(entry);
            }
        }
    }
    Ok(report)
}

/// How long since the run directory or its `state/` last changed (symlinks not followed).
fn idle_for(run: &Path) -> Duration {
    let newest = [run.to_owned(), run.join("state")]
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    SystemTime::now().duration_since(newest).unwrap_or_default()
}

/// Remove the run if its lock is free; `Some(reason)` when it is kept.
fn remove_if_free(
    runs: &RunsDir,
    path: &Path,
    id: &RunId,
    dry_run: bool,
) -> Result<Option<String>, GcError> {
    let lockfile = path.join(RUN_LOCK);
    if dry_run {
        // Probe without creating or holding anything.
        let held = match applock::open_existing(&lockfile)? {
            None => false,
            Some(f) => matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)),
        };
        return Ok(held.then(|| "held by a live run".to_owned()));
    }
    let file = match applock::acquire_verified(&lockfile, Wait::No, Duration::MAX, &mut |_| {})? {
        Verified::Busy { holder, .. } => {
            let (pid, _) = pid_and_run(holder.as_ref());
            return Ok(Some(format!("held by pid {pid}")));
        }
        Verified::Held { file, .. } => file,
    };
    let trash = runs
        .path()
        .join(format!("{TRASH_PREFIX}{id}~{}", std::process::id()));
    fs::rename(path, &trash)?;
    let removed = fs::remove_dir_all(&trash);
    drop(file); // released only now: the run is gone
    removed?;
    Ok(None)
}

/// What can go wrong removing one run.
#[derive(Debug, thiserror::Error)]
enum GcError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Lock(#[from] applock::LockError),
}
