//! Steps 2–4 of the protocol on any lockfile path: open by the rules, lock exclusively
//! (waiting as asked), verify identity, and reopen when the path names another inode.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::open::open_rw;
use super::wait::block;
use super::{LockError, MAX_REOPENS, Wait, WaitEvent, holder_of, same_file};
use crate::lock::lockowner;

/// How long to keep retrying while the only holders are momentary shared probes
/// (`--status`, a dry-run janitor) before treating the lock as held. A probe holds its
/// lock for microseconds; this only runs out under a flood of them.
const PROBE_PATIENCE: Duration = Duration::from_secs(2);

/// The outcome of [`acquire_verified`].
#[derive(Debug)]
pub enum Verified {
    Held {
        file: File,
        waited: Option<Duration>,
    },
    /// Held by someone else: the open lockfile, to name the holder with
    /// [`holder_of`] if the caller wants to (reading the kernel's lock table costs).
    Busy { file: Arc<File>, waited: Duration },
}

/// Steps 2–4 of the protocol on any lockfile path (the app lock, a run's `.run.lock`):
/// open by the rules, lock exclusively (waiting as `wait` says), verify identity, and
/// start over when the path no longer names the inode we locked.
///
/// `progress` is how often `StillWaiting` is reported while blocked. When a `Wait::For`
/// runs out, the helper thread blocked in `flock` is left behind; if it gets the lock
/// later it closes the file at once, releasing it.
pub fn acquire_verified(
    path: &Path,
    wait: Wait,
    progress: Duration,
    on_event: &mut dyn FnMut(WaitEvent<'_>),
) -> Result<Verified, LockError> {
    acquire(
        path,
        &|p| open_rw(p, true),
        Loose::Retire,
        wait,
        progress,
        on_event,
    )
}

/// As [`acquire_verified`], on a lockfile that another program shares and owns the rules
/// of (the old layer's, `legacy.rs`): opened by `open`, and never retired whatever its
/// mode — that file is the one the other program's runs lock.
pub fn acquire_shared_verified(
    path: &Path,
    open: &dyn Fn(&Path) -> Result<File, LockError>,
    wait: Wait,
    progress: Duration,
    on_event: &mut dyn FnMut(WaitEvent<'_>),
) -> Result<Verified, LockError> {
    acquire(path, open, Loose::Keep, wait, progress, on_event)
}

/// What to do with a lockfile others could open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loose {
    /// Ours: retire it (lockowner.rs).
    Retire,
    /// Another program's: lock it as it is.
    Keep,
}

/// As [`acquire_verified`], but never creates the lockfile: a missing one is
/// `LockError::Open` with `NotFound` (for `gc`, which must not mistake a directory that
/// never was a run for one by creating its lock).
pub fn acquire_existing(path: &Path, wait: Wait) -> Result<Verified, LockError> {
    acquire(
        path,
        &|p| open_rw(p, false),
        Loose::Retire,
        wait,
        Duration::MAX,
        &mut |_| {},
    )
}

fn acquire(
    path: &Path,
    open: &dyn Fn(&Path) -> Result<File, LockError>,
    loose_rule: Loose,
    wait: Wait,
    progress: Duration,
    on_event: &mut dyn FnMut(WaitEvent<'_>),
) -> Result<Verified, LockError> {
    let start = Instant::now();
    let deadline = match wait {
        Wait::For(d) => Some(start + d),
        Wait::No | Wait::Forever => None,
    };
    let flock_err = |source| LockError::Flock {
        path: path.to_owned(),
        source,
    };
    let busy = |file| Verified::Busy {
        file,
        waited: start.elapsed(),
    };
    let mut waited = None;
    for _ in 0..MAX_REOPENS {
        let file = open(path)?;
        let loose =
            loose_rule == Loose::Retire && file.metadata().is_ok_and(|m| lockowner::is_loose(&m));
        let file = if loose {
            // Made by an older build, openable by others: never run on (lockowner.rs).
            match lockowner::retire(path, &file).map_err(flock_err)? {
                Some(fresh) => {
                    on_event(WaitEvent::Retired { path });
                    fresh
                }
                None => continue,
            }
        } else if try_exclusive(&file).map_err(flock_err)? {
            file
        } else {
            if wait == Wait::No || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(busy(Arc::new(file)));
            }
            let holder = holder_of(&file);
            on_event(WaitEvent::Blocked {
                holder: holder.as_ref(),
            });
            match block(file, start, deadline, progress, on_event).map_err(flock_err)? {
                Ok(file) => {
                    waited = Some(start.elapsed());
                    file
                }
                Err(file) => return Ok(busy(file)),
            }
        };
        if same_file(&file, path).map_err(flock_err)? {
            return Ok(Verified::Held { file, waited });
        }
        let inode = file.metadata().map(|m| m.ino()).unwrap_or_default();
        drop(file);
        on_event(WaitEvent::Replaced { path, inode });
    }
    Err(LockError::Unstable {
        path: path.to_owned(),
    })
}

/// Try for the exclusive lock without blocking. A status probe or dry-run janitor holds
/// `LOCK_SH` for an instant; that must not read as "another run in flight". So when the
/// exclusive try fails, a shared try tells the two apart: it fails only if someone holds
/// the lock exclusively.
fn try_exclusive(file: &File) -> io::Result<bool> {
    let give_up = Instant::now() + PROBE_PATIENCE;
    let mut pause = Duration::from_micros(20);
    while Instant::now() < give_up {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        match file.try_lock_shared() {
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
            // Only probes hold it. Our own fresh descriptor: unlocking it touches no one.
            Ok(()) => file.unlock()?,
        }
        // Back off a little, so a busy prober cannot keep hitting the same instant.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    Ok(false)
}
