//! `ccci-rundir gc`: remove run directories nobody uses any more.
//!
//! A run directory is a directory of ours holding a regular `.run.lock` of ours: anything
//! else in the runs dir (a mistyped `--runs-dir` pointing at `/var/lib`) is not a run and
//! is never touched; the lock is never created here. A run is removed only when that
//! lock is free — taken without waiting, and held for the whole removal — and its newest
//! mtime (the directory and `state/`), checked again under the lock, is older than the
//! limit. A held run is never removed, however old. Nothing mounted inside a run is ever
//! reached (see `removal`).
//!
//! Removal never follows a symlink: `abra/servers` points at the canonical tree, and
//! deleting through it would destroy every app's config. std's `remove_dir_all` unlinks
//! symlinks instead of descending into them (it works with `openat`/`unlinkat` and
//! `O_NOFOLLOW`). The directory is first renamed to a `gc~` name that is not a valid run
//! id, while the lock is held, so a run starting with the same id at that moment gets a
//! fresh directory instead of one being deleted under it; leftovers of an interrupted
//! gc are finished off by the next.
//!
//! A run of that id starting while gc holds its lock must wait for gc, not take it for a
//! run in progress. What gc writes into the lock comes only after it holds it, so it
//! cannot be what tells them apart: gc holds a shared flock on the runs dir's
//! [`GC_LOCK`] for its whole sweep, before it takes any run lock, and a run whose lock's
//! holder (by the kernel's lock table) also holds that one knows it is a gc.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{GC_LOCK, GC_TOOL, RUN_LOCK};
use crate::duration;
use crate::lock::applock::{self, Probe, Verified, Wait};
use crate::lock::holder::pid_and_run;
use crate::run::rundir::RunsDir;
use crate::run::runid::RunId;

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
    // A dry run creates nothing and only probes run locks shared, which a starting run
    // already tells from a holder (applock's `try_exclusive`).
    let _sweeping = match dry_run {
        true => None,
        false => Some(mark_sweep(runs)?),
    };
    let mut entries: Vec<_> = fs::read_dir(runs.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let Some(name) = name.to_str() else { continue };
        let path = runs.path().join(name);
        let mut entry = GcEntry {
            run_id: name.to_owned(),
            path: path.display().to_string(),
            idle_s: 0,
            reason: None,
        };
        let is_trash = name.starts_with(TRASH_PREFIX);
        if !is_trash && RunId::parse(name).is_err() {
            continue;
        }
        if !is_run_dir(&path) {
            if !is_trash {
                entry.reason =
                    Some("not a run directory (no .run.lock of ours): not touched".into());
                report.kept.push(entry);
            }
            continue;
        }
        // Age first, without locking (cheap), and again under the lock below.
        let idle = idle_for(&path);
        entry.idle_s = idle.as_secs();
        if !is_trash && idle < older_than {
            entry.reason = Some(format!("recent (idle {})", duration::format(idle)));
            report.kept.push(entry);
            continue;
        }
        let outcome = match dry_run {
            true => probe(&path),
            false => remove_if_free(
                runs,
                &path,
                name,
                if is_trash { None } else { Some(older_than) },
            ),
        };
        match outcome {
            Ok(Fate::Removed) => report.removed.push(entry),
            Ok(Fate::Gone) => {}
            Ok(Fate::Kept(reason)) => {
                entry.reason = Some(reason);
                report.kept.push(entry);
            }
            Ok(Fate::Failed { path, error }) => {
                entry.path = path;
                entry.reason = Some(error);
                report.failed.push(entry);
            }
            Err(e) => {
                entry.reason = Some(e.to_string());
                report.failed.push(entry);
            }
        }
    }
    Ok(report)
}

/// Take [`GC_LOCK`] shared, for as long as the returned file is open.
fn mark_sweep(runs: &RunsDir) -> io::Result<fs::File> {
    let path = runs.path().join(GC_LOCK);
    let file = applock::open_lockfile(&path).map_err(io::Error::other)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        // Nothing of ours takes it exclusively: without it, a run starting while we hold
        // its lock would be refused, so refuse to sweep instead.
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::other(format!(
            "{} is locked exclusively by someone else (gc never does): not sweeping",
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// A directory of ours with a regular `.run.lock` of ours (not followed).
fn is_run_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let ours = |p: &Path, dir: bool| {
        fs::symlink_metadata(p)
            .is_ok_and(|m| m.uid() == me && if dir { m.is_dir() } else { m.is_file() })
    };
    ours(path, true) && ours(&path.join(RUN_LOCK), false)
}

enum Fate {
    Removed,
    /// Vanished since the listing (another gc took it): nothing to report.
    Gone,
    Kept(String),
    Failed {
        path: String,
        error: String,
    },
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

/// Dry run: probe the lock with `LOCK_SH|LOCK_NB`, create and change nothing.
fn probe(path: &Path) -> Result<Fate, GcError> {
    Ok(match applock::probe(&path.join(RUN_LOCK))? {
        Probe::Absent => Fate::Gone,
        Probe::Held(_) => Fate::Kept("held by a live run".into()),
        Probe::Free => Fate::Removed,
    })
}

/// Remove the run if its lock is free and (for a run, not leftover trash) it is still
/// idle once the lock is held.
fn remove_if_free(
    runs: &RunsDir,
    path: &Path,
    name: &str,
    older_than: Option<Duration>,
) -> Result<Fate, GcError> {
    let lock = match applock::acquire_existing(&path.join(RUN_LOCK), Wait::No) {
        Err(applock::LockError::Open { source, .. })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(Fate::Gone);
        }
        other => other?,
    };
    let file = match lock {
        Verified::Busy { file, .. } => {
            let (pid, _) = pid_and_run(applock::holder_of(&file).as_ref());
            return Ok(Fate::Kept(format!("held by pid {pid}")));
        }
        Verified::Held { file, .. } => file,
    };
    // For people reading the lock, and the fallback by which a run of this id knows to
    // wait for us when the kernel's lock table cannot be read (see rundir).
    let holder = crate::lock::holder::Holder::new_for_this_process(None, None, GC_TOOL, vec![]);
    let _ = holder.write(&file);
    if let Some(limit) = older_than {
        let idle = idle_for(path);
        if idle < limit {
            return Ok(Fate::Kept(format!(
                "recent (idle {})",
                duration::format(idle)
            )));
        }
    }
    let trash = if name.starts_with(TRASH_PREFIX) {
        path.to_owned()
    } else {
        let trash = runs
            .path()
            .join(format!("{TRASH_PREFIX}{name}~{}", std::process::id()));
        match fs::rename(path, &trash) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Fate::Gone),
            other => other?,
        }
        trash
    };
    let removed = crate::files::removal::remove_tree(&trash);
    drop(file); // released only now: the run is gone
    Ok(match removed {
        Ok(()) => Fate::Removed,
        Err(e) => Fate::Failed {
            path: trash.display().to_string(),
            error: e.to_string(),
        },
    })
}

/// What can go wrong removing one run.
#[derive(Debug, thiserror::Error)]
enum GcError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Lock(#[from] applock::LockError),
}
