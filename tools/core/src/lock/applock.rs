//! The app lock protocol: one run per app domain, shared by ccci-lock, ccci-deploy and
//! ccci-janitor (`docs/lock.md`).
//!
//! * The lock is `flock(2)` `LOCK_EX` on `<lock dir>/cc-ci-app-<domain>.lock`, through
//!   std's `File::lock`/`File::try_lock`, so it interoperates with `flock(1)`. The kernel
//!   releases it when the last descriptor of the open file description closes — i.e. when
//!   the command and every descendant that inherited it have exited. Nothing here ever
//!   calls `LOCK_UN` on a descriptor another process may share.
//! * The file is opened `O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC`, never truncated on open,
//!   and must be a regular file with one link, owned by us: a planted symlink or hard
//!   link must never be written through.
//! * Identity: a flock protects an inode, not a name. A janitor may unlink the name of a
//!   free lockfile (holding the lock while it does) while a waiter is blocked on that
//!   inode; when the waiter then gets the lock, it holds a dead file while a newcomer
//!   holds a fresh one under the same name. So after every acquisition `(st_dev, st_ino)`
//!   of the descriptor are compared with those of the path, and on a mismatch the lock is
//!   dropped and the whole thing starts over.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;

use crate::domain::Domain;
use crate::lock::holder::Holder;
use crate::lock::lockdir::LockDir;
use crate::lock::lockowner;
use crate::lock::proclocks::OpenBy;

/// How many times a lockfile may be found replaced under us before we give up: each
/// replacement needs a janitor pass, so a hundred in a row means something is wrong.
pub const MAX_REOPENS: u32 = 100;

/// How long to keep retrying while the only holders are momentary shared probes
/// (`--status`, a dry-run janitor) before treating the lock as held. A probe holds its
/// lock for microseconds; this only runs out under a flood of them.
const PROBE_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lockfile {} is a symbolic link — refusing to open it (a planted link must never be written through)", path.display())]
    Symlink { path: PathBuf },
    #[error("lockfile {} {problem} — refusing it", path.display())]
    Unsafe { path: PathBuf, problem: String },
    #[error("cannot open lockfile {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Flock { path: PathBuf, source: io::Error },
    #[error("lockfile {} was replaced under us {MAX_REOPENS} times in a row — giving up", path.display())]
    Unstable { path: PathBuf },
    #[error(
        "cannot tell whether a run holds {domain} through a lockfile removed by hand — not going in: {source}"
    )]
    CannotTell { domain: Domain, source: io::Error },
}

/// How long to wait for a held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    No,
    For(Duration),
    Forever,
}

/// What happens while waiting, for the caller to report.
#[derive(Debug)]
pub enum WaitEvent<'a> {
    /// The lock is held by someone else and we are about to block.
    Blocked { holder: Option<&'a Holder> },
    /// Still blocked, `waited` after we started.
    StillWaiting {
        waited: Duration,
        holder: Option<&'a Holder>,
    },
    /// We got the lock on an inode that no longer has the lockfile's name (a janitor
    /// unlinked it while we waited): dropped, and starting over on the path.
    Replaced { path: &'a Path, inode: u64 },
    /// The lockfile could be opened by other users (an older build made it 0644): it was
    /// retired, and a fresh 0600 one put in its place, which we hold (lockowner.rs).
    Retired { path: &'a Path },
    /// Our holder metadata could not be written (the lock is held all the same).
    HolderNotWritten {
        path: &'a Path,
        error: &'a io::Error,
    },
    /// We hold the fresh lockfile, but a run holds the domain through one that was removed
    /// by hand (step 6): waiting for it to end.
    HeldUnlinked { holders: &'a [OpenBy] },
    /// Still waiting for that run, `waited` after we started.
    StillHeldUnlinked {
        waited: Duration,
        holders: &'a [OpenBy],
    },
}

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
    /// Take `domain`'s lock in `dir` (which the caller has [`LockDir::ensure`]d) for a
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

/// Say on stderr that a lockfile was retired (the one event a tool that reports nothing
/// else while locking must still say): `<tool>: warning: ...`.
pub fn warn_retired(tool: &str) -> impl FnMut(WaitEvent<'_>) + '_ {
    move |event| {
        if let WaitEvent::Retired { path } = event {
            crate::diag!(
                tool,
                "warning: {} could be opened by other users (made 0644 by an older build): retired, and a fresh 0600 lockfile put in its place",
                path.display()
            );
        }
    }
}

/// The lock on `domain` that this process already holds, if any: one of our own open
/// descriptors whose open file description holds an exclusive flock (the kernel says so
/// in `/proc/self/fdinfo/<fd>`, proc(5)) on the inode the lockfile path names — checked
/// after, so nobody can unlink the file in between (only a holder may).
///
/// Only the kernel is asked, never `CCCI_LOCK_DOMAIN` / `CCCI_LOCK_FD`: a nested lock of
/// another domain overwrites those, and `ccci-lock D -- ccci-lock E -- ccci-lock D` must
/// still see that it holds D (it would wait for itself forever). Variables can also lie.
///
/// This is how a nested `ccci-lock` of the same domain avoids waiting for itself, and how
/// `ccci-deploy` checks it runs under the lock. It only reads: a `flock(LOCK_EX|LOCK_NB)`
/// probe would convert a caller's shared lock (dropping it first) and could take a free
/// lock through a stray descriptor, which proves nothing about who holds the domain.
///
/// An error when our descriptors cannot be read (`EMFILE`): the caller cannot tell, and
/// must neither wait for itself nor act as the holder.
///
/// A lockfile removed by hand is not "ours" any more, even if we hold it: a waiter of
/// `flock(1)` that woke on an inode the janitor unlinked holds such a one too, beside the
/// run holding the fresh lockfile. (Step 6 of [`AppLock::acquire`] keeps that case from
/// deadlocking instead: a newcomer waits for us without holding the fresh lockfile.)
pub fn inherited(dir: &LockDir, domain: &Domain) -> io::Result<Option<RawFd>> {
    let locked = crate::lock::proclocks::our_exclusive_flocks()?;
    let Ok(named) = fs::symlink_metadata(dir.lockfile(domain)) else {
        return Ok(None);
    };
    // Compared through `fstat` of the descriptor, in `stat`'s own terms: the device the
    // lock table (and fdinfo) names is not always `st_dev` (btrfs subvolumes).
    Ok(locked.into_iter().find_map(|(fd, _)| {
        let held = fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
        (held.dev() == named.dev() && held.ino() == named.ino()).then_some(fd)
    }))
}

/// The processes that hold `domain` through a lockfile someone removed by hand (outside
/// the protocol, which unlinks only while holding): a fresh lockfile at the path did not
/// make us wait for them, yet they are a run of the domain. Never our own run: a lock that
/// a descriptor of ours holds (our own, or one a parent `ccci-lock` passed down, whose
/// lockfile was removed) is left out, or a nested run would wait for itself forever.
/// An error when the kernel's lock table or a process cannot be read: "cannot tell" must
/// never let a second run in.
pub fn unlinked_holders(
    dir: &LockDir,
    domain: &Domain,
) -> io::Result<Vec<crate::lock::proclocks::OpenBy>> {
    let table = crate::lock::proclocks::LockTable::load()?;
    let of_domain =
        |table: &crate::lock::proclocks::LockTable| -> io::Result<Vec<crate::lock::proclocks::OpenBy>> {
            Ok(crate::lock::lockdir::holders_of(
                &dir.held_unlinked(table)?,
                domain,
            ))
        };
    // Normally there is none; only then is it worth reading our own descriptors.
    if of_domain(&table)?.is_empty() {
        return Ok(Vec::new());
    }
    of_domain(&table.without_our_own()?)
}

/// Who holds the lock on `file`, for people to read: its metadata when the kernel's lock
/// table agrees that pid holds it; when it names another pid (the metadata is a past
/// holder's: the current one, e.g. `flock(1)`, wrote none), just that pid.
pub fn holder_of(file: &File) -> Option<Holder> {
    holder_in(file, crate::lock::proclocks::LockTable::read().as_ref())
}

/// As [`holder_of`], with a lock table read once for many lockfiles.
pub fn holder_in(file: &File, table: Option<&crate::lock::proclocks::LockTable>) -> Option<Holder> {
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

/// Open (creating if absent) a lockfile by the protocol's rules.
pub fn open_lockfile(path: &Path) -> Result<File, LockError> {
    open_rw(path, true)
}

/// Created 0600 (whatever the umask, the file being new): only its owner may be able to
/// lock it (lockowner.rs).
fn open_rw(path: &Path, create: bool) -> Result<File, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(lockowner::MODE)
        .custom_flags(OPEN_FLAGS)
        .open(path);
    checked(path, file)
}

/// `O_NOFOLLOW`: a planted symlink fails the open itself. `O_NONBLOCK`: a planted FIFO
/// must not hang the open (it is refused just after, as not a regular file; for a
/// regular file the flag means nothing and is cleared). `O_CLOEXEC` is std's default.
pub(crate) const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;

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

/// Open an existing lockfile read-only, for probes that must create nothing; `None` when
/// there is no such file.
pub fn open_existing(path: &Path) -> Result<Option<File>, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS)
        .open(path);
    match file {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => checked(path, other).map(Some),
    }
}

/// The checks every opened lockfile passes (step 2): a regular file, owned by us, with
/// one link; `O_NONBLOCK` cleared again.
pub(crate) fn checked(path: &Path, opened: io::Result<File>) -> Result<File, LockError> {
    let file = opened.map_err(|source| match source.raw_os_error() {
        Some(libc::ELOOP) => LockError::Symlink { path: path.into() },
        // A directory or a socket where the lockfile belongs: refused like any other
        // file that is not a regular one, not an I/O failure.
        Some(libc::EISDIR | libc::ENXIO) => LockError::Unsafe {
            path: path.into(),
            problem: "is not a regular file".into(),
        },
        _ => LockError::Open {
            path: path.into(),
            source,
        },
    })?;
    let meta = file.metadata().map_err(|source| LockError::Open {
        path: path.into(),
        source,
    })?;
    let refuse = |problem: String| LockError::Unsafe {
        path: path.into(),
        problem,
    };
    if !meta.file_type().is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    // The descriptor may be inherited by the command: leave it an ordinary one.
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(|e| LockError::Open {
        path: path.into(),
        source: e.into(),
    })?;
    let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(blocking)).map_err(|e| LockError::Open {
        path: path.into(),
        source: e.into(),
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!(
            "is owned by uid {}, not by us (uid {me})",
            meta.uid()
        )));
    }
    // One name only: a hard link planted in the lock dir could point at any file of ours.
    // (0 links is a lockfile unlinked since we opened it: the identity check handles it.)
    if meta.nlink() > 1 {
        return Err(refuse(format!("has {} hard links", meta.nlink())));
    }
    Ok(file)
}

/// Whether `path` (not followed) still names the inode `file` is open on.
pub fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
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

/// Block in `flock(LOCK_EX)` on a helper thread, so the wake-up follows the holder's
/// release at once while this thread reports progress and watches the deadline.
/// `Err` with the (still shared) file when the deadline passed first.
fn block(
    file: File,
    start: Instant,
    deadline: Option<Instant>,
    progress: Duration,
    on_event: &mut dyn FnMut(WaitEvent<'_>),
) -> io::Result<Result<File, Arc<File>>> {
    let file = Arc::new(file);
    let (tx, rx) = mpsc::channel();
    let locker = {
        let file = Arc::clone(&file);
        thread::spawn(move || {
            let result = loop {
                match file.lock() {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            drop(file);
            let _ = tx.send(result);
        })
    };
    let progress = progress.max(Duration::from_millis(10));
    // From now, not from `start`: after a reopen, reports already due must not burst out.
    let mut next_report = Instant::now() + progress.min(Duration::from_secs(86_400 * 365));
    loop {
        let wake = deadline.map_or(next_report, |d| d.min(next_report));
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(result) => {
                result?;
                let _ = locker.join();
                let file = Arc::into_inner(file).expect("the locker thread dropped its handle");
                return Ok(Ok(file));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(Err(file));
                }
                if now >= next_report {
                    let holder = holder_of(&file);
                    on_event(WaitEvent::StillWaiting {
                        waited: now - start,
                        holder: holder.as_ref(),
                    });
                    next_report = now + progress.min(Duration::from_secs(86_400 * 365));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the thread waiting for the lock died"));
            }
        }
    }
}
