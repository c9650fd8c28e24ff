//! A run's own directory: a private abra tree and run-keyed state files
//! (`docs/rundir.md`).
//!
//! Runs used to share `~/.abra/recipes/` (one run's `rm -rf` + re-clone pulled the tree
//! from under another) and keep their deploy counter in `/tmp/ccci-deploys-<domain>` (two
//! runs of one domain corrupted each other's count: CONC-A1). Now each run gets
//!
//! ```text
//! <runs dir>/<run id>/
//!     .run.lock                      flock held for the run's lifetime
//!     abra/servers   -> <canonical>/servers     (symlink: app configs are shared)
//!     abra/catalogue -> <canonical>/catalogue   (symlink)
//!     abra/recipes/                             fresh and empty
//!     state/                                    fresh and empty
//! ```
//!
//! Everything is laid out idempotently while holding `.run.lock`, so a crashed attempt
//! of the same run id is repaired, and a concurrent one is refused. Symlinks may be
//! replaced freely (unlinking one never touches its target); real files and directories
//! where a symlink belongs are someone's data and are refused, never deleted.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::{ABRA, GC_LOCK, GC_TOOL, RUN_LOCK, STATE};
use crate::env::EnvVars;
use crate::files::shareddir::{SharedDir, SharedDirError};
use crate::lock::applock::{self, LockError, Verified, Wait};
use crate::lock::holder::Holder;
use crate::run::runid::RunId;

/// The parent of every run's directory.
#[derive(Clone, Debug)]
pub struct RunsDir {
    dir: SharedDir,
}

impl RunsDir {
    pub fn new(path: impl Into<PathBuf>) -> RunsDir {
        RunsDir {
            dir: SharedDir {
                path: path.into(),
                what: "runs dir",
                var: EnvVars::CCCI_RUNS_DIR,
            },
        }
    }
}

/// `path()`, `ensure()` and `check_existing()` are the shared dir's own.
impl std::ops::Deref for RunsDir {
    type Target = SharedDir;

    fn deref(&self) -> &SharedDir {
        &self.dir
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error(transparent)]
    Shared(#[from] SharedDirError),
    #[error("run {id} is already in progress (pid {pid})")]
    InProgress { id: RunId, pid: String },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{}/servers does not exist — is abra set up? (set {})", canonical.display(), EnvVars::CCCI_CANONICAL_ABRA_DIR)]
    NoServers { canonical: PathBuf },
    #[error("{} is a real {kind} where a symlink to {} belongs — refusing to touch it (it may be someone's data; move it away)", path.display(), target.display())]
    DataWhereLinkBelongs {
        path: PathBuf,
        kind: &'static str,
        target: PathBuf,
    },
    #[error("{} is not a directory we own — refusing to lay out a run there", path.display())]
    NotOurDir { path: PathBuf },
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RunDirError + 'a {
    move |source| RunDirError::Io {
        doing,
        path: path.to_owned(),
        source,
    }
}

/// A laid-out run directory whose `.run.lock` this process holds.
#[derive(Debug)]
pub struct RunDir {
    pub id: RunId,
    pub path: PathBuf,
    lock: File,
}

impl RunDir {
    /// Create (or repair) the run's directory under `runs`, holding its run lock, with
    /// links to the `canonical` abra tree. Paths are made absolute: they end up in the
    /// environment of a command that may change directory.
    pub fn prepare(runs: &RunsDir, id: RunId, canonical: &Path) -> Result<RunDir, RunDirError> {
        runs.ensure()?;
        let root = std::path::absolute(runs.path()).map_err(io_err("resolve", runs.path()))?;
        let canonical = std::path::absolute(canonical).map_err(io_err("resolve", canonical))?;
        let path = root.join(id.as_str());
        let lock = lock_run(&root, &path, &id)?;
        let run = RunDir { id, path, lock };
        run.lay_out(&canonical)?;
        Ok(run)
    }

    fn lay_out(&self, canonical: &Path) -> Result<(), RunDirError> {
        let servers = crate::abra::servers(canonical);
        if !servers.is_dir() {
            return Err(RunDirError::NoServers {
                canonical: canonical.to_owned(),
            });
        }
        let catalogue = canonical.join("catalogue");
        if !catalogue.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&catalogue)
                .map_err(io_err("create", &catalogue))?;
        }
        let abra = self.abra_dir();
        fresh_dir(&abra, false)?;
        link(&crate::abra::servers(&abra), &servers)?;
        link(&abra.join("catalogue"), &catalogue)?;
        fresh_dir(&abra.join(crate::abra::RECIPES), true)?;
        fresh_dir(&self.state_dir(), true)?;
        // Relaying out an old run id adds no entry, so the mtime `gc` judges idleness by
        // would stay old: a run just (re)started must never look idle.
        let touch =
            File::open(&self.path).and_then(|d| d.set_modified(std::time::SystemTime::now()));
        touch.map_err(io_err("touch", &self.path))
    }

    pub fn abra_dir(&self) -> PathBuf {
        self.path.join(ABRA)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path.join(STATE)
    }

    /// The variables the run's command gets, in the documented order.
    pub fn vars(&self) -> Vec<(&'static str, OsString)> {
        let state = self.state_dir();
        vec![
            (EnvVars::ABRA_DIR, self.abra_dir().into()),
            (EnvVars::CCCI_RUN_ID, self.id.as_str().into()),
            (EnvVars::CCCI_RUN_DIR, self.path.clone().into()),
            (EnvVars::CCCI_STATE_DIR, state.clone().into()),
            (
                EnvVars::CCCI_DEPLOY_COUNT_FILE,
                state.join("deploys").into(),
            ),
            (EnvVars::CCCI_OP_STATE_FILE, state.join("opstate").into()),
            (EnvVars::CCCI_DEPS_FILE, state.join("deps").into()),
            (EnvVars::CCCI_DEPSKIP_FILE, state.join("depskip").into()),
        ]
    }

    /// Keep the run lock across exec: the command (and whatever inherits from it) holds
    /// the run for as long as it lives.
    pub fn into_inherited_fd(self) -> io::Result<RawFd> {
        fcntl(&self.lock, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        Ok(self.lock.into_raw_fd())
    }
}

/// Create the run dir if needed and take its `.run.lock` without waiting (another holder
/// is another process using this run id: refused). A `gc` holds the lock while it judges
/// the run and, if idle, renames the directory away and deletes it: that one is waited
/// for, blocked in `flock` on the lock it holds; then we start over, since the lock it
/// released may be on a dead file (the identity check after locking catches that) in a
/// vanished directory, which is then created afresh.
fn lock_run(root: &Path, path: &Path, id: &RunId) -> Result<File, RunDirError> {
    let lockfile = path.join(RUN_LOCK);
    let gc_lock = root.join(GC_LOCK);
    for _ in 0..applock::MAX_REOPENS {
        match fs::DirBuilder::new().mode(0o755).create(path) {
            Ok(()) => match fs::set_permissions(path, fs::Permissions::from_mode(0o755)) {
                Ok(()) => {}
                // Renamed away by gc at once: again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("chmod", path)(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", path)(e)),
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            // gc renamed it away between our mkdir and this look: again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("inspect", path)(e)),
        };
        let mine = std::os::unix::fs::MetadataExt::uid(&meta) == nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || !mine {
            return Err(RunDirError::NotOurDir {
                path: path.to_owned(),
            });
        }
        match applock::acquire_verified(
            &lockfile,
            Wait::No,
            Duration::MAX,
            &mut applock::warn_retired("ccci-rundir"),
        ) {
            Ok(Verified::Held { file, .. }) => {
                let holder =
                    Holder::new_for_this_process(None, Some(id.as_str()), "ccci-rundir", vec![]);
                let _ = holder.write(&file); // only for people reading it: best effort
                return Ok(file);
            }
            Ok(Verified::Busy { file, .. }) => match held_by(&file, &gc_lock) {
                HeldBy::Gc => {
                    wait_for_release(&file).map_err(io_err("wait for gc on", &lockfile))?
                }
                // Released since we tried: try again.
                HeldBy::Nobody => {}
                HeldBy::Run { pid } => {
                    return Err(RunDirError::InProgress {
                        id: id.clone(),
                        pid,
                    });
                }
            },
            // The directory was renamed away by gc between our mkdir and open: again.
            Err(LockError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(LockError::Unstable { path: lockfile }.into())
}

/// Who holds a run lock we could not take.
enum HeldBy {
    Gc,
    Run { pid: String },
    Nobody,
}

/// Tell a gc's hold from a run's. What gc writes into the lock comes only after it holds
/// it (the file still names the run before, or is half-written), so the kernel decides:
/// a holder that also holds the runs dir's `GC_LOCK` is a gc, which takes that before
/// any run lock and keeps it until after. gc's own record, when the kernel agrees it is
/// the holder's, says so too, and is all there is when the lock table cannot be read.
fn held_by(file: &File, gc_lock: &Path) -> HeldBy {
    let table = crate::lock::proclocks::LockTable::read();
    let record = applock::holder_in(file, table.as_ref());
    let gc_says_so = record.as_ref().and_then(|h| h.tool.as_deref()) == Some(GC_TOOL);
    let run = |record: Option<Holder>| HeldBy::Run {
        pid: crate::lock::holder::pid_and_run(record.as_ref()).0,
    };
    let Some(table) = table else {
        return if gc_says_so { HeldBy::Gc } else { run(record) };
    };
    let holders = file
        .metadata()
        .map(|m| table.holders(&m))
        .unwrap_or_default();
    let gcs = fs::symlink_metadata(gc_lock)
        .map(|m| table.holders(&m))
        .unwrap_or_default();
    if holders.is_empty() {
        HeldBy::Nobody
    } else if gc_says_so || holders.iter().any(|pid| gcs.contains(pid)) {
        HeldBy::Gc
    } else {
        run(record)
    }
}

/// Block until the holder lets go of `file`'s lock (no polling: flock wakes us), then
/// let go at once: what is at the path afterwards is locked anew and verified.
fn wait_for_release(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => {
                other?;
                return file.unlock();
            }
        }
    }
}

/// Make `path` an empty real directory (`empty`), or just a real directory. A symlink
/// there is unlinked (never followed); with `empty`, whatever is inside is removed
/// without following symlinks (std's `remove_dir_all` unlinks them).
fn fresh_dir(path: &Path, empty: bool) -> Result<(), RunDirError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if empty {
                crate::files::removal::empty_dir(path).map_err(io_err("empty", path))?;
            }
            return Ok(());
        }
        Ok(meta) if meta.file_type().is_symlink() || empty => {
            fs::remove_file(path).map_err(io_err("replace", path))?;
        }
        Ok(_) => {
            return Err(RunDirError::NotOurDir {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", path)(e)),
    }
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(io_err("create", path))?;
    set_mode(path)
}

/// Exactly 0755 whatever the umask: the run's tree is read by whoever runs its steps.
fn set_mode(path: &Path) -> Result<(), RunDirError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", path))
}

/// Make `path` a symlink to `target`: kept if it already is one, replaced atomically if
/// it points elsewhere, created if absent, refused if it is real data.
fn link(path: &Path, target: &Path) -> Result<(), RunDirError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(path).is_ok_and(|t| t == target) {
                return Ok(());
            }
            // Replace in one step (rename over it), so there is never no link.
            let tmp = path.with_extension("ccci-new");
            let _ = fs::remove_file(&tmp);
            symlink(target, &tmp).map_err(io_err("create", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("replace", path))
        }
        Ok(meta) => Err(RunDirError::DataWhereLinkBelongs {
            path: path.to_owned(),
            kind: if meta.is_dir() { "directory" } else { "file" },
            target: target.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            symlink(target, path).map_err(io_err("create", path))
        }
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}
