//! Opening a lockfile by the protocol's rules (step 2), and the identity check (step 4).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use super::LockError;
use crate::lock::lockowner;

/// Open (creating if absent) a lockfile by the protocol's rules.
pub fn open_lockfile(path: &Path) -> Result<File, LockError> {
    open_rw(path, true)
}

/// Created 0600 (whatever the umask, the file being new): only its owner may be able to
/// lock it (lockowner.rs).
pub(super) fn open_rw(path: &Path, create: bool) -> Result<File, LockError> {
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
