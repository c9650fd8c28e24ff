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
//! unlinked under a name no tool takes for a lockfile, and whatever holds it — another
//! user, or a run of an older build still in flight — holds nothing anybody asks about
//! (`proclocks` passes over such an inode too, see [`is_loose`]). Upgrade while no run of
//! an older build is in flight: its lock is not honoured.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
/// (`renameat2(RENAME_EXCHANGE)`), so the path never lacks a lockfile. If the old name
/// then holds `loose`, it is unlinked and the fresh file, held, is returned. If someone
/// put another file there first, it is swapped back untouched (`None`): start over. Who
/// opened the path meanwhile opened our fresh file and blocks on it until we are done;
/// they start over as after a janitor's unlink.
pub fn retire(path: &Path, loose: &File) -> io::Result<Option<File>> {
    let loose = loose.metadata()?;
    let temp = temp_name(path);
    let fresh = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)?;
    fresh.set_permissions(fs::Permissions::from_mode(MODE))?;
    // Nobody else knows the name yet: this cannot block.
    fresh.lock()?;
    let exchange = |a: &Path, b: &Path| {
        renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(io::Error::from)
    };
    if let Err(e) = exchange(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    let swapped_out = fs::symlink_metadata(&temp)?;
    if swapped_out.dev() == loose.dev() && swapped_out.ino() == loose.ino() {
        fs::remove_file(&temp)?;
        return Ok(Some(fresh));
    }
    exchange(&temp, path)?;
    fs::remove_file(&temp)?;
    Ok(None)
}

/// `.cc-ci-app-D.lock.<pid>.retiring`: beside the lockfile, never taken for one
/// (`LockDir::domains` and `proclocks` want `cc-ci-app-<domain>.lock`).
fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let dir = path.parent().unwrap_or(Path::new("/"));
    dir.join(format!(".{name}.{}.retiring", std::process::id()))
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
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        // Someone replaced it first: what is there now is swapped back, untouched.
        assert!(retire(&path, &old).unwrap().is_none());
        assert_eq!(fs::metadata(&path).unwrap().ino(), now.ino());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
