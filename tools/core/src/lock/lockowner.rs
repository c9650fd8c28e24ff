//! Lockfiles only their owner can lock.
//!
//! `flock(2)` needs nothing but a descriptor, and a read-only one will do: a lockfile any
//! user can open is a lock any user can hold, blocking every run of that app on the host.
//! So lockfiles (the app locks and each run's `.run.lock`) are created 0600.
//!
//! One that others could open (group or other bits: made 0644 by an older build) is
//! *retired*, never run on: a chmod would not take back a descriptor another user opened
//! before it, and who holds such a file cannot be judged from the outside (a root
//! `flock(1)` run that dropped privileges looks like another user; another user behind a
//! setuid program looks like root). So the first tool that opens it puts a fresh, locked
//! 0600 lockfile under the name in one step ([`retire`]) and holds that; the old inode is
//! unlinked under a name no tool takes for a lockfile (`.retiring.<pid>`), and whatever holds it — another
//! user, or a run of an older build still in flight — holds nothing anybody asks about
//! (`proclocks` passes over such an inode too, see [`is_loose`]). Upgrade while no run of
//! an older build is in flight: its lock is not honoured.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::libc;

/// The mode of every lockfile: read and write for its owner, nothing for anyone else.
pub const MODE: u32 = 0o600;

/// Whether a lockfile with this metadata could be opened by others: one made by an older
/// build (0644), which no tool runs on.
pub fn is_loose(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o077 != 0
}

/// Put a fresh 0600 lockfile, locked by us, under `path` in place of `loose` (open on the
/// inode the path named), atomically: the two names are exchanged
/// (`renameat2(RENAME_EXCHANGE)`), so the path never lacks a lockfile; the old inode, now
/// under the temporary name, is unlinked; the fresh file, held, is returned. `None` when
/// the path no longer names `loose` (someone retired it first): start over.
///
/// Retirers take turns on [`RETIRE_LOCK`] beside the lockfile (0600, so no one else can
/// hold it): between the look at the path and the exchange nobody else may retire it, or
/// two retirers could trade a live lockfile away. Nothing else renames a lockfile, and a
/// loose one is never held by a tool of this build, so none unlinks it meanwhile. Who
/// opened the path meanwhile opened our fresh file and blocks on it until we are done;
/// they find it held, as any waiter does.
pub fn retire(path: &Path, loose: &File) -> io::Result<Option<File>> {
    let loose = loose.metadata()?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let turn = open_private(&dir.join(RETIRE_LOCK), false)?;
    // Only tools of ours hold it, for the length of one exchange.
    turn.lock()?;
    let named = fs::symlink_metadata(path);
    if !named.is_ok_and(|m| m.dev() == loose.dev() && m.ino() == loose.ino()) {
        return Ok(None);
    }
    let temp = dir.join(format!(".retiring.{}", std::process::id()));
    // Left by a retirer that died here with our pid: nothing of anyone's now.
    let _ = fs::remove_file(&temp);
    let fresh = open_private(&temp, true)?;
    // Nobody else knows the name yet: this cannot block.
    fresh.lock()?;
    if let Err(e) = renameat2(
        AT_FDCWD,
        &temp,
        AT_FDCWD,
        path,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        let _ = fs::remove_file(&temp);
        return Err(e.into());
    }
    fs::remove_file(&temp)?;
    Ok(Some(fresh))
}

/// Where retirers of the lockfiles of one directory take turns (never a lockfile name).
pub const RETIRE_LOCK: &str = ".retire.lock";

/// Open (creating it 0600 if absent; `new`: it must not exist) a file of ours, not
/// through a symlink.
fn open_private(path: &Path, new: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!new)
        .create_new(new)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || is_loose(&meta) {
        return Err(io::Error::other(format!(
            "{} is not a private file of ours",
            path.display()
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_loose_lockfile() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        fs::write(&path, "").unwrap();
        for (mode, loose) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(is_loose(&fs::metadata(&path).unwrap()), loose, "{mode:o}");
        }
    }

    #[test]
    fn a_retired_lockfile_leaves_a_fresh_held_one_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cc-ci-app-a.lock");
        fs::write(&path, "").unwrap();
        let old = File::open(&path).unwrap();
        let fresh = retire(&path, &old).unwrap().expect("retired");
        let now = fs::metadata(&path).unwrap();
        assert_eq!(now.ino(), fresh.metadata().unwrap().ino());
        assert_ne!(now.ino(), old.metadata().unwrap().ino());
        assert_eq!(now.permissions().mode() & 0o777, MODE);
        assert!(matches!(
            File::open(&path).unwrap().try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(tmp.path()), [RETIRE_LOCK, "cc-ci-app-a.lock"]);
        // Retired already: what is there now is left alone.
        assert!(retire(&path, &old).unwrap().is_none());
        assert_eq!(fs::metadata(&path).unwrap().ino(), now.ino());
        assert_eq!(names(tmp.path()), [RETIRE_LOCK, "cc-ci-app-a.lock"]);
    }
}
