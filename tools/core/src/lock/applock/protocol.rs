//! The held app lock, and the whole protocol a run takes it by: steps 2–4
//! ([`acquire_verified`]), then step 6 (wait out a run holding the domain through a
//! lockfile removed by hand), then the holder record (step 5).

use std::fs::{self, File};
use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::{
    LockError, Verified, Wait, WaitEvent, acquire_verified, holder_of, same_file, unlinked_holders,
};
use crate::domain::Domain;
use crate::lock::holder::Holder;
use crate::lock::lockdir::LockDir;
use crate::lock::proclocks::OpenBy;

/// The outcome of an acquisition that did not fail.
#[derive(Debug)]
pub enum Acquisition {
    Held {
        lock: AppLock,
        waited: Option<Duration>,
    },
    Busy {
        holder: Option<Holder>,
        waited: Duration,
    },
    /// Held through a lockfile removed by hand, by `holders`, past the wait.
    BusyUnlinked {
        holders: Vec<OpenBy>,
        waited: Duration,
    },
}

/// A held, identity-verified app lock.
#[derive(Debug)]
pub struct AppLock {
    file: File,
    path: PathBuf,
    domain: Domain,
}

impl AppLock {
    /// Take `domain`'s lock in `dir` (which the caller has [`SharedDir::ensure`](crate::files::shareddir::SharedDir::ensure)d) for a
    /// run, the whole protocol: steps 2–4 ([`acquire_verified`]), then step 6 — while a
    /// run holds the domain through a lockfile removed by hand, wait for it to end —
    /// within the same `wait` and reporting through the same `on_event`; then `holder` is
    /// written into the lockfile.
    ///
    /// Step 6 waits *without* holding the fresh lockfile, and takes it again afterwards:
    /// the run it waits for may take the domain again itself (a nested `ccci-lock D` of a
    /// harness), through the fresh lockfile, and if we held that, it would wait for us
    /// while we wait for it — forever.
    pub fn acquire(
        dir: &LockDir,
        domain: &Domain,
        wait: Wait,
        progress: Duration,
        holder: &Holder,
        on_event: &mut dyn FnMut(WaitEvent<'_>),
    ) -> Result<Acquisition, LockError> {
        let start = Instant::now();
        let deadline = match wait {
            Wait::For(d) => Some(start + d),
            Wait::No | Wait::Forever => None,
        };
        let out_of_time = |now: Instant| wait == Wait::No || deadline.is_some_and(|d| now >= d);
        let unlinked = || {
            unlinked_holders(dir, domain).map_err(|source| LockError::CannotTell {
                domain: domain.clone(),
                source,
            })
        };
        let path = dir.lockfile(domain);
        let progress = progress.max(Duration::from_millis(10));
        let mut waited_for_unlinked = false;
        loop {
            // A second try, after step 6 waited: with what is left of the wait.
            let left = match (wait, deadline) {
                (Wait::For(_), Some(d)) => Wait::For(d.saturating_duration_since(Instant::now())),
                _ => wait,
            };
            let (file, waited) = match acquire_verified(&path, left, progress, on_event)? {
                Verified::Held { file, waited } => (file, waited),
                Verified::Busy { file, .. } => {
                    return Ok(Acquisition::Busy {
                        holder: holder_of(&file),
                        waited: start.elapsed(),
                    });
                }
            };
            let holders = unlinked()?;
            if holders.is_empty() {
                let lock = AppLock {
                    file,
                    path,
                    domain: domain.clone(),
                };
                if let Err(error) = lock.write_holder(holder) {
                    on_event(WaitEvent::HolderNotWritten {
                        path: &lock.path,
                        error: &error,
                    });
                }
                let waited = (waited_for_unlinked || waited.is_some()).then(|| start.elapsed());
                return Ok(Acquisition::Held { lock, waited });
            }
            // Let go, so the run we wait for can take the domain again through it.
            drop(file);
            if out_of_time(Instant::now()) {
                return Ok(Acquisition::BusyUnlinked {
                    holders,
                    waited: start.elapsed(),
                });
            }
            if !waited_for_unlinked {
                on_event(WaitEvent::HeldUnlinked { holders: &holders });
                waited_for_unlinked = true;
            }
            // Nothing to block on (the removed file has no name): look again shortly.
            let mut next_report = Instant::now() + progress.min(Duration::from_secs(86_400 * 365));
            loop {
                thread::sleep(Duration::from_millis(100));
                let holders = unlinked()?;
                if holders.is_empty() {
                    break;
                }
                let now = Instant::now();
                if out_of_time(now) {
                    return Ok(Acquisition::BusyUnlinked {
                        holders,
                        waited: start.elapsed(),
                    });
                }
                if now >= next_report {
                    on_event(WaitEvent::StillHeldUnlinked {
                        waited: now - start,
                        holders: &holders,
                    });
                    next_report = now + progress.min(Duration::from_secs(86_400 * 365));
                }
            }
        }
    }

    /// An app lock from a file that [`acquire_verified`] returned held and verified.
    pub fn from_verified(file: File, path: PathBuf, domain: Domain) -> AppLock {
        AppLock { file, path, domain }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Write this holder's metadata into the lockfile (a warning on failure, never a
    /// reason to give up the lock).
    pub fn write_holder(&self, holder: &Holder) -> io::Result<()> {
        holder.write(&self.file)
    }

    /// Whether the path still names the inode we hold.
    pub fn verify(&self) -> io::Result<bool> {
        same_file(&self.file, &self.path)
    }

    /// Remove the lockfile — the only way the protocol allows: while holding the lock,
    /// right after re-verifying that the path still names our inode. Returns whether it
    /// was removed; the lock is released when `self` is dropped, after the unlink, so a
    /// waiter that wakes on the dead inode finds it unlinked and starts over.
    pub fn remove_lockfile(self) -> io::Result<bool> {
        if !self.verify()? {
            return Ok(false);
        }
        fs::remove_file(&self.path)?;
        Ok(true)
    }

    /// Hand the lock to the command we are about to exec: clear `FD_CLOEXEC` and give up
    /// ownership of the descriptor, which stays open (and the lock held) across exec.
    pub fn into_inherited_fd(self) -> io::Result<RawFd> {
        fcntl(&self.file, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        Ok(self.file.into_raw_fd())
    }
}
