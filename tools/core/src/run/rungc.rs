//! `ccci-rundir gc`: remove what runs nobody uses any more left behind, and keep their
//! results.
//!
//! A run directory is a directory of ours holding a regular `.run.lock` of ours: anything
//! else in the runs dir (a mistyped `--runs-dir` pointing at `/var/lib`) is not a run and
//! is never touched; the lock is never created here. A run is acted on only when that
//! lock is free — taken without waiting, and held for the whole removal — and its newest
//! mtime (the directory and `state/`), checked again under the lock, is past the limit.
//! A held run is never touched, however old. Nothing mounted inside a run is ever
//! reached (see `removal`).
//!
//! What is removed is what rundir laid out ([`LAID_OUT`]: the abra tree, the state
//! files, the run lock), after `--older-than`. Everything else in a run directory was
//! written by the run's command — on the cc-ci host the harness's `results.json`, lint
//! output and screenshots, which the dashboard serves for as long as they exist — and is
//! kept, unless `--results-older-than` (off by default) says whole runs go after that
//! long. A run directory with nothing but what rundir laid out goes whole after
//! `--older-than`: its lock is unlinked last, and the directory removed with `rmdir`,
//! which fails rather than delete anything that appeared in it meanwhile.
//!
//! Removal never follows a symlink: `abra/servers` points at the canonical tree, and
//! deleting through it would destroy every app's config. std's `remove_dir_all` unlinks
//! symlinks instead of descending into them (it works with `openat`/`unlinkat` and
//! `O_NOFOLLOW`). A whole run is first renamed to a `gc~` name that is not a valid run
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

use super::{ABRA, GC_LOCK, GC_TOOL, LAID_OUT, RUN_LOCK, STATE};
use crate::duration;
use crate::lock::applock::{self, Probe, Verified, Wait};
use crate::lock::holder::pid_and_run;
use crate::run::rundir::RunsDir;
use crate::run::runid::RunId;

const TRASH_PREFIX: &str = "gc~";

/// How long a free run is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Idle this long, a run loses what rundir laid out (`--older-than`).
    pub older_than: Duration,
    /// Idle this long, a run is removed whole, what its command wrote included
    /// (`--results-older-than`); never when `None`. Whatever `older_than` says.
    pub results_older_than: Option<Duration>,
}

#[derive(Debug, Serialize)]
pub struct GcEntry {
    pub run_id: String,
    pub path: String,
    /// Seconds since the run last changed anything.
    pub idle_s: u64,
    /// What the run's command wrote at the top of its directory (not laid out by
    /// rundir): kept by a prune, removed with a whole run.
    pub results: Vec<String>,
    /// Why it was kept (`held by pid P`, `recent`, ...) or why removal failed.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub version: u32,
    /// Runs whose directory is gone.
    pub removed: Vec<GcEntry>,
    /// Runs that lost what rundir laid out and kept what their command wrote.
    pub pruned: Vec<GcEntry>,
    pub kept: Vec<GcEntry>,
    /// Runs whose removal failed (also the reason the exit status is 1).
    pub failed: Vec<GcEntry>,
}

pub fn gc(runs: &RunsDir, retention: &Retention, dry_run: bool) -> io::Result<GcReport> {
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
            results: vec![],
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
        // Judged first without locking (cheap), and again under the lock below. What
        // an interrupted gc renamed away goes whole, whatever its age.
        let retention = (!is_trash).then_some(retention);
        let verdict = match retention {
            None => Verdict::Remove,
            Some(retention) => match judge(&path, retention, &mut entry) {
                Ok(verdict) => verdict,
                // Removed since the listing (another gc took it): nothing to report.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    entry.reason = Some(e.to_string());
                    report.failed.push(entry);
                    continue;
                }
            },
        };
        let outcome = match verdict {
            Verdict::Keep(reason) => Ok(Fate::Kept(reason)),
            _ if dry_run => probe(&path, &verdict, &entry),
            _ => remove_if_free(runs, &path, name, retention, &mut entry),
        };
        match outcome {
            Ok(Fate::Removed) => report.removed.push(entry),
            Ok(Fate::Pruned) => report.pruned.push(entry),
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

/// What to do with a run, by its age and what is in it (if its lock is free).
enum Verdict {
    Keep(String),
    /// Remove what rundir laid out; the directory too if nothing else is in it.
    Prune,
    /// Remove the whole directory, what the run's command wrote included.
    Remove,
}

/// Judge `run` by `retention`, noting its idle time and what its command wrote in
/// `entry`.
fn judge(run: &Path, retention: &Retention, entry: &mut GcEntry) -> io::Result<Verdict> {
    let idle = SystemTime::now()
        .duration_since(last_change(run))
        .unwrap_or_default();
    entry.idle_s = idle.as_secs();
    let mut laid_out = false;
    entry.results.clear();
    for name in fs::read_dir(run)? {
        let name = name?.file_name();
        match LAID_OUT.iter().any(|l| name == *l) {
            true => laid_out |= name != RUN_LOCK,
            false => entry.results.push(name.to_string_lossy().into_owned()),
        }
    }
    entry.results.sort();
    Ok(if retention.results_older_than.is_some_and(|r| idle >= r) {
        Verdict::Remove
    } else if idle < retention.older_than {
        Verdict::Keep(format!("recent (idle {})", duration::format(idle)))
    } else if laid_out || entry.results.is_empty() {
        Verdict::Prune
    } else {
        Verdict::Keep(match retention.results_older_than {
            None => "results kept (no --results-older-than)".into(),
            Some(r) => format!("results kept until idle {}", duration::format(r)),
        })
    })
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
    Pruned,
    /// Vanished since the listing (another gc took it): nothing to report.
    Gone,
    Kept(String),
    Failed {
        path: String,
        error: String,
    },
}

/// When the run directory or its `state/` last changed (symlinks not followed).
fn last_change(run: &Path) -> SystemTime {
    [run.to_owned(), run.join(STATE)]
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Dry run: probe the lock with `LOCK_SH|LOCK_NB`, create and change nothing.
fn probe(path: &Path, verdict: &Verdict, entry: &GcEntry) -> Result<Fate, GcError> {
    Ok(match applock::probe(&path.join(RUN_LOCK))? {
        Probe::Absent => Fate::Gone,
        Probe::Held(_) => Fate::Kept("held by a live run".into()),
        Probe::Free => match verdict {
            Verdict::Prune if !entry.results.is_empty() => Fate::Pruned,
            _ => Fate::Removed,
        },
    })
}

/// Act on the run if its lock is free, as it is judged (a run, not leftover trash) once
/// the lock is held.
fn remove_if_free(
    runs: &RunsDir,
    path: &Path,
    name: &str,
    retention: Option<&Retention>,
    entry: &mut GcEntry,
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
    // wait for us when the kernel's lock table cannot be read (see rundir). Written
    // before judging: it changes neither the directory's nor `state/`'s mtime.
    let holder = crate::lock::holder::Holder::new_for_this_process(None, None, GC_TOOL, vec![]);
    let _ = holder.write(&file);
    let fate = match retention {
        None => remove_whole(runs, path, name),
        Some(retention) => match judge(path, retention, entry)? {
            Verdict::Keep(reason) => Ok(Fate::Kept(reason)),
            Verdict::Prune => prune(path),
            Verdict::Remove => remove_whole(runs, path, name),
        },
    };
    drop(file); // released only now: what was removed is gone
    fate
}

/// Remove what rundir laid out in a run whose lock we hold, keeping everything else; the
/// directory too when nothing else is in it.
fn prune(run: &Path) -> Result<Fate, GcError> {
    let changed = last_change(run);
    for part in [ABRA, STATE] {
        let path = run.join(part);
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => crate::files::removal::remove_tree(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            return Ok(Fate::Failed {
                path: path.display().to_string(),
                error: e.to_string(),
            });
        }
    }
    let left: Vec<_> = fs::read_dir(run)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    if left == [RUN_LOCK] {
        // The lock goes last and the directory by `rmdir`, which deletes nothing that
        // appeared meanwhile: a run of this id starting after the unlink makes a fresh
        // lock in it and the directory is its own again.
        fs::remove_file(run.join(RUN_LOCK))?;
        return match fs::remove_dir(run) {
            Ok(()) => Ok(Fate::Removed),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(Fate::Pruned),
            Err(e) => Err(e.into()),
        };
    }
    // Removing entries touched the directory: the run's age must still count from its
    // last change, not from this prune (`--results-older-than` goes by it).
    let _ = fs::File::open(run).and_then(|dir| dir.set_modified(changed));
    Ok(Fate::Pruned)
}

/// Remove a whole run whose lock we hold (or the leftover of an interrupted gc): renamed
/// to a `gc~` name first, so a run of this id that starts meanwhile gets a fresh one.
fn remove_whole(runs: &RunsDir, path: &Path, name: &str) -> Result<Fate, GcError> {
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
    Ok(match crate::files::removal::remove_tree(&trash) {
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
