//! The old layer's lockfile, honoured while a host switches to ccci (`docs/lock.md`,
//! "Switching from the old layer").
//!
//! The Python harness ccci replaces locks `/run/lock/cc-ci-app-<domain>.lock` (no
//! sub-directory) for every domain it deploys, and its janitor, run at the start of every
//! build, reaps each run app whose lockfile there it can lock. ccci's lock is another file
//! (`<lock dir>/cc-ci-app-<domain>.lock`), so while builds of both kinds run side by side,
//! each janitor would take the other's live runs for orphans, and two builds of one domain
//! would deploy over each other. So while `CCCI_LEGACY_LOCK_DIR` names the old layer's
//! directory, every ccci run also holds the old lockfile of each domain it holds (after
//! ccci's own, always in that order), and the janitor reaps only what it holds both locks
//! of.
//!
//! The file is the old layer's, in a directory shared with other programs (`/run/lock`,
//! mode 1777): it is never retired nor chmod-ed (old runs lock that very inode), nothing is
//! written into it, the directory is neither created nor changed. A missing file is
//! created 0644, exactly as the old layer makes it (whatever the umask): the lock table
//! scan (`proclocks`) passes over a lockfile others could open, so a held old-layer file
//! beside the lock dir never reads as a ccci lockfile moved there by hand. Its identity is
//! verified after every acquisition, as the old layer does: its janitor unlinks the file
//! after reaping, and a waiter that won the dead inode starts over.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;

use crate::domain::Domain;
use crate::env::EnvVars;
use crate::lock::applock::{self, LockError, Verified, Wait, WaitEvent};
use crate::lock::lockdir::lockfile_name;

/// The mode the old layer's lockfiles have (Python's default under umask 022).
pub const MODE: u32 = 0o644;

/// Where the old layer's lockfiles are, when the host is switching; nothing when not.
#[derive(Clone, Debug, Default)]
pub struct LegacyLocks {
    dir: Option<PathBuf>,
    /// ccci's own lock dir, which the old layer's must not be: both name their files
    /// `cc-ci-app-<domain>.lock`, so a run would wait for its own lock, forever.
    ours: Option<PathBuf>,
}

/// Not acquired: a run of the old layer holds the domain.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "the old layer's lock dir {} (CCCI_LEGACY_LOCK_DIR) {problem}", dir.display()
    )]
    Dir { dir: PathBuf, problem: String },
    #[error("{domain} is held by a run of the old layer (pid {pid}, through {}) — {how}", path.display())]
    Busy {
        domain: Domain,
        path: PathBuf,
        pid: String,
        how: String,
    },
}

/// An old-layer lockfile we hold, identity-verified.
#[derive(Debug)]
pub struct LegacyLock {
    file: File,
    path: PathBuf,
    waited: Option<Duration>,
}

/// What a non-blocking try found (the janitor's probe).
#[derive(Debug)]
pub enum Tried {
    Held(LegacyLock),
    /// A run of the old layer holds it: the open file, to name it.
    Busy(std::sync::Arc<File>, PathBuf),
}

impl LegacyLocks {
    /// From `CCCI_LEGACY_LOCK_DIR` (unset or empty: off), made absolute.
    pub fn from_env() -> LegacyLocks {
        LegacyLocks::new(crate::env::non_empty(EnvVars::CCCI_LEGACY_LOCK_DIR).map(PathBuf::from))
    }

    pub fn new(dir: Option<PathBuf>) -> LegacyLocks {
        LegacyLocks {
            dir: dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
            ours: None,
        }
    }

    /// Used beside ccci's lock dir `ours`: the old layer's must be another directory.
    pub fn beside(self, ours: &crate::lock::lockdir::LockDir) -> LegacyLocks {
        LegacyLocks {
            ours: Some(ours.path().to_owned()),
            ..self
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// `domain`'s old lockfile, `<dir>/cc-ci-app-<domain>.lock`; `None` when off.
    pub fn lockfile(&self, domain: &Domain) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(lockfile_name(domain)))
    }

    /// Hold `domain`'s old lockfile for a run, waiting as `wait` says and reporting
    /// through `on_event` (see [`LegacyLocks::say_events`]); `None` when the host is not switching.
    /// Take ccci's own lock of the domain first: that order, always, is what keeps two
    /// ccci runs from waiting for each other here.
    pub fn hold(
        &self,
        domain: &Domain,
        wait: Wait,
        progress: Duration,
        on_event: &mut dyn FnMut(WaitEvent<'_>),
    ) -> Result<Option<LegacyLock>, LegacyError> {
        let Some(path) = self.usable_lockfile(domain)? else {
            return Ok(None);
        };
        let start = Instant::now();
        match applock::acquire_shared_verified(&path, &open, wait, progress, on_event)? {
            Verified::Held { file, waited } => Ok(Some(LegacyLock { file, path, waited })),
            Verified::Busy { file, .. } => {
                let waited = start.elapsed();
                Err(LegacyError::Busy {
                    domain: domain.clone(),
                    pid: holder_pid(&file),
                    path,
                    how: wait.how_it_ended(waited),
                })
            }
        }
    }

    /// Try `domain`'s old lockfile without waiting (the janitor); `None` when off.
    pub fn try_hold(&self, domain: &Domain) -> Result<Option<Tried>, LegacyError> {
        let Some(path) = self.usable_lockfile(domain)? else {
            return Ok(None);
        };
        Ok(Some(
            match applock::acquire_shared_verified(
                &path,
                &open,
                Wait::No,
                Duration::MAX,
                &mut |_| {},
            )? {
                Verified::Held { file, .. } => Tried::Held(LegacyLock {
                    file,
                    path,
                    waited: None,
                }),
                Verified::Busy { file, .. } => Tried::Busy(file, path),
            },
        ))
    }

    /// A read-only look (dry runs, `--status`): held or not, creating nothing; `None`
    /// when off.
    pub fn probe(&self, domain: &Domain) -> Result<Option<(applock::Probe, PathBuf)>, LegacyError> {
        let Some(path) = self.usable_lockfile(domain)? else {
            return Ok(None);
        };
        Ok(Some((applock::probe(&path)?, path)))
    }

    /// The lockfile, once the directory is known fit to lock in: it must exist (it is the
    /// old layer's, never created here) and be a directory that nobody but its owner can
    /// swap files in without the sticky bit. Nothing of it is changed.
    fn usable_lockfile(&self, domain: &Domain) -> Result<Option<PathBuf>, LegacyError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let problem = |problem: String| LegacyError::Dir {
            dir: dir.clone(),
            problem,
        };
        let meta = fs::metadata(dir).map_err(|e| problem(format!("cannot be used: {e}")))?;
        if !meta.is_dir() {
            return Err(problem("is not a directory".into()));
        }
        let ours = self.ours.as_ref().and_then(|o| fs::metadata(o).ok());
        if ours.is_some_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino()) {
            return Err(problem(format!(
                "is ccci's own lock dir ({}): both layers name a lockfile cc-ci-app-<domain>.lock, so a run would wait for itself — the old layer's is /run/lock, ccci's /run/lock/cc-ci",
                EnvVars::CCCI_APP_LOCK_DIR
            )));
        }
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(problem(format!(
                "is writable by others without the sticky bit (mode {:o}): anyone could replace a lockfile there",
                mode & 0o7777
            )));
        }
        Ok(self.lockfile(domain))
    }
}

impl LegacyLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long it took when a run of the old layer held it first.
    pub fn waited(&self) -> Option<Duration> {
        self.waited
    }

    /// Keep the lock across exec, for the whole run: clear `FD_CLOEXEC` and give up
    /// ownership of the descriptor.
    pub fn into_inherited_fd(self) -> io::Result<RawFd> {
        fcntl(&self.file, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        Ok(self.file.into_raw_fd())
    }

    /// Unlink the lockfile, the old janitor's way and ours: while holding it, right after
    /// re-verifying that the path still names our inode. Whether it was removed.
    pub fn remove_lockfile(self) -> io::Result<bool> {
        if !applock::same_file(&self.file, &self.path)? {
            return Ok(false);
        }
        fs::remove_file(&self.path)?;
        Ok(true)
    }
}

/// Open (creating it 0644 if absent) an old-layer lockfile: not through a symlink, only a
/// regular file of ours with one link (applock's checks), mode left as it is.
fn open(path: &Path) -> Result<File, LockError> {
    for _ in 0..applock::MAX_REOPENS {
        let fresh = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(MODE)
            .custom_flags(applock::OPEN_FLAGS)
            .open(path);
        match fresh {
            Ok(file) => {
                // Ours, just made: 0644 whatever the umask, as the old layer's are.
                file.set_permissions(fs::Permissions::from_mode(MODE))
                    .map_err(|source| LockError::Open {
                        path: path.into(),
                        source,
                    })?;
                return applock::checked(path, Ok(file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return applock::checked(path, Err(e)),
        }
        // There already: opened as it is (never `O_CREAT` on another's file in a sticky
        // directory, which `fs.protected_regular` refuses).
        let existing = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(applock::OPEN_FLAGS)
            .open(path);
        match existing {
            // Unlinked in between (the old janitor): make it again.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            other => return applock::checked(path, other),
        }
    }
    Err(LockError::Unstable { path: path.into() })
}

/// Who holds an old lockfile, from the kernel's lock table (the old layer writes nothing).
pub fn holder_pid(file: &File) -> String {
    let pids = file
        .metadata()
        .ok()
        .and_then(|m| crate::lock::proclocks::flock_holders(&m))
        .unwrap_or_default();
    pids.first()
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

/// How long the old layer has held a lockfile: it touches the file's mtime on acquire.
pub fn held_for(file: &File) -> Option<Duration> {
    file.metadata().ok()?.modified().ok()?.elapsed().ok()
}

impl LegacyLocks {
    /// The `==` lines of a run waiting for a run of the old layer, on stderr as
    /// `ccci-lock`'s own (none with `quiet`); a dead inode is said as `tool: ...`.
    pub fn say_events<'a>(
        &'a self,
        tool: &'a str,
        domain: &'a Domain,
        quiet: bool,
    ) -> impl FnMut(WaitEvent<'_>) + 'a {
        move |event| match event {
            WaitEvent::Replaced { path, inode } => crate::diag!(
                tool,
                "{} was unlinked while we waited on it (inode {inode}, by the old layer's janitor) — reopening",
                path.display()
            ),
            _ if quiet => {}
            WaitEvent::Blocked { .. } => crate::say!(
                "== app lock: {domain} is held by a run of the old layer ({}) — waiting ==",
                self.old_holder(domain)
            ),
            WaitEvent::StillWaiting { waited, .. } => crate::say!(
                "== app lock: still waiting for a run of the old layer on {domain} after {} ({}) ==",
                crate::duration::format(waited),
                self.old_holder(domain)
            ),
            _ => {}
        }
    }

    /// `pid P, held 3m, through /run/lock/cc-ci-app-D.lock`, read afresh.
    fn old_holder(&self, domain: &Domain) -> String {
        let Some(path) = self.lockfile(domain) else {
            return "unknown".into();
        };
        let Ok(file) = File::open(&path) else {
            return format!("through {}", path.display());
        };
        let held = held_for(&file).map_or_else(
            || "unknown".into(),
            |d| crate::duration::format(Duration::from_secs(d.as_secs())),
        );
        format!(
            "pid {}, held {held}, through {}",
            holder_pid(&file),
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn switching() -> (tempfile::TempDir, LegacyLocks, Domain) {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let legacy = LegacyLocks::new(Some(tmp.path().to_owned()));
        (
            tmp,
            legacy,
            Domain::parse("immi-ad3e33.ci.commoninternet.net").unwrap(),
        )
    }

    #[test]
    fn off_holds_nothing_and_creates_nothing() {
        let d = Domain::parse("a.b").unwrap();
        let off = LegacyLocks::new(None);
        assert!(
            off.hold(&d, Wait::No, Duration::MAX, &mut |_| {})
                .unwrap()
                .is_none()
        );
        assert!(off.try_hold(&d).unwrap().is_none());
        assert!(off.lockfile(&d).is_none());
    }

    #[test]
    fn a_missing_lockfile_is_made_0644_whatever_the_umask_and_an_old_one_keeps_its_mode() {
        let (tmp, legacy, d) = switching();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let held = legacy.hold(&d, Wait::No, Duration::MAX, &mut |_| {});
        nix::sys::stat::umask(old);
        let held = held.unwrap().unwrap();
        let path = tmp
            .path()
            .join("cc-ci-app-immi-ad3e33.ci.commoninternet.net.lock");
        assert_eq!(held.path(), path);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            MODE
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            b"",
            "something was written into it"
        );
        drop(held);
        // One the old layer made 0640: locked as it is, never retired nor chmod-ed.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        let held = legacy
            .hold(&d, Wait::No, Duration::MAX, &mut |_| {})
            .unwrap()
            .unwrap();
        let now = fs::metadata(&path).unwrap();
        assert_eq!((now.ino(), now.permissions().mode() & 0o7777), (ino, 0o640));
        // Held: a second try is busy, naming the holder.
        match legacy.try_hold(&d).unwrap().unwrap() {
            Tried::Busy(file, _) => assert_eq!(holder_pid(&file), std::process::id().to_string()),
            Tried::Held(_) => panic!("held twice"),
        }
        assert!(held.remove_lockfile().unwrap());
        assert!(!path.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_and_an_unsticky_shared_dir_are_refused() {
        let (tmp, legacy, d) = switching();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "x").unwrap();
        std::os::unix::fs::symlink(&victim, legacy.lockfile(&d).unwrap()).unwrap();
        let err = legacy
            .hold(&d, Wait::No, Duration::MAX, &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(err, LegacyError::Lock(LockError::Symlink { .. })),
            "{err}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"x");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = legacy.try_hold(&d).unwrap_err().to_string();
        assert!(
            err.contains("without the sticky bit") && err.contains("CCCI_LEGACY_LOCK_DIR"),
            "{err}"
        );
        // Never chmod-ed back.
        assert_eq!(
            fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o7777,
            0o777
        );
        let missing = LegacyLocks::new(Some(tmp.path().join("none")));
        assert!(
            missing
                .try_hold(&d)
                .unwrap_err()
                .to_string()
                .contains("cannot be used")
        );
        assert!(!tmp.path().join("none").exists());
    }
}
