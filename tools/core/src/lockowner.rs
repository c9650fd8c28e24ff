//! Lockfiles only their owner can lock.
//!
//! `flock(2)` needs nothing but a descriptor, and a read-only one will do: a lockfile any
//! user can open is a lock any user can hold, blocking every run of that app on the host.
//! So lockfiles (the app locks and each run's `.run.lock`) are created 0600, and one
//! found with group or other bits (made by an older build, 0644) is chmod-ed 0600 the
//! moment we open it.
//!
//! A chmod does not revoke a descriptor opened before it, so a process of another user
//! may still lock an old lockfile through one. Such a holder is never a run: a run's lock
//! is taken by the lock dir's owner (root on the host) through a descriptor opened for
//! writing, and only the owner or root can open the file for writing. A *foreign* holder
//! — every description holding the flock opened read-only, by a process neither the
//! file's owner nor root — is taken out of the way by swapping a fresh 0600 lockfile in
//! under the name (`renameat2(RENAME_EXCHANGE)`, see [`replace_foreign`]), and the lock
//! is taken again on that.
//!
//! When a holder cannot be looked at (gone from `/proc`, another PID namespace), it is
//! not foreign: "cannot tell" is always a run.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::libc;

use crate::proclocks::{LockTable, any_flock_in_fdinfo};

/// The mode of every lockfile: read and write for its owner, nothing for anyone else.
pub const MODE: u32 = 0o600;

/// Make `file` (ours: the caller checked) 0600 if others could open it; whether it was
/// looser.
pub fn tighten(file: &File) -> io::Result<bool> {
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    file.set_permissions(fs::Permissions::from_mode(MODE))?;
    Ok(true)
}

/// A process that holds a lockfile without being able to be a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreigner {
    pub pid: i32,
    pub uid: u32,
}

/// The holders of the flock (shared or exclusive) on `file` when every one is foreign (see the
/// module); `None` when there is none or any holder may be a run.
pub fn foreign_holders(file: &File, table: &LockTable) -> Option<Vec<Foreigner>> {
    let meta = file.metadata().ok()?;
    let (dev, ino, owner) = (meta.dev(), meta.ino(), meta.uid());
    let mut found = Vec::new();
    for pid in table.holders(&meta) {
        match judge(pid, dev, ino, owner) {
            Verdict::Foreign(f) => found.push(f),
            Verdict::MayBeRun => return None,
            // The process that placed the lock is gone (`flock 3` exits at once): whoever
            // inherited its description holds the lock now. Look at every process.
            Verdict::NotHolding => {
                for other in crate::proclocks::all_pids().ok()?.filter(|&p| p != pid) {
                    match judge(other, dev, ino, owner) {
                        Verdict::Foreign(f) => found.push(f),
                        Verdict::MayBeRun => return None,
                        Verdict::NotHolding => {}
                    }
                }
            }
        }
    }
    found.sort_by_key(|f| f.pid);
    found.dedup();
    (!found.is_empty()).then_some(found)
}

/// `pid` as a foreigner, when it holds the flock on `(dev, ino)` only through read-only
/// descriptions and none of its user ids is `owner` or root.
pub fn foreign(pid: i32, dev: u64, ino: u64, owner: u32) -> Option<Foreigner> {
    match judge(pid, dev, ino, owner) {
        Verdict::Foreign(f) => Some(f),
        _ => None,
    }
}

enum Verdict {
    Foreign(Foreigner),
    /// Holds it, or cannot be looked at well enough to rule it out.
    MayBeRun,
    /// Gone, or holds no description with the flock.
    NotHolding,
}

fn judge(pid: i32, dev: u64, ino: u64, owner: u32) -> Verdict {
    if pid <= 0 {
        // Another PID namespace: out of sight, so it may be a run.
        return Verdict::MayBeRun;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return match fs::metadata(format!("/proc/{pid}")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Verdict::NotHolding,
            _ => Verdict::MayBeRun,
        };
    };
    let mut read_only_only = None;
    for fd in fds.flatten() {
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", fd.file_name().display());
        let Ok(info) = fs::read_to_string(fdinfo) else {
            continue;
        };
        // Shared or exclusive: a foreigner's `flock -s` blocks a run's `LOCK_EX` as well.
        let Some((d, i)) = any_flock_in_fdinfo(&info) else {
            continue;
        };
        let same = i == ino
            && nix::sys::stat::major(d) == nix::sys::stat::major(dev)
            && nix::sys::stat::minor(d) == nix::sys::stat::minor(dev);
        if same {
            let ro = read_only(&info).unwrap_or(false);
            read_only_only = Some(read_only_only.unwrap_or(true) && ro);
        }
    }
    match read_only_only {
        None => Verdict::NotHolding,
        Some(false) => Verdict::MayBeRun,
        Some(true) => match uids(pid) {
            // Real, effective, saved and filesystem uid: any of them root or the owner
            // could have opened the file for writing, or could now.
            Some(ids) if !ids.iter().any(|&u| u == 0 || u == owner) => {
                Verdict::Foreign(Foreigner { pid, uid: ids[1] })
            }
            _ => Verdict::MayBeRun,
        },
    }
}

/// A process's four user ids (`Uid:` in `/proc/<pid>/status`).
fn uids(pid: i32) -> Option<Vec<u32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .map(|u| u.parse().ok())
        .collect::<Option<_>>()?;
    (ids.len() == 4).then_some(ids)
}

/// Whether an fdinfo's `flags:` (octal) say the description was opened read-only.
fn read_only(fdinfo: &str) -> Option<bool> {
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))?
        .trim();
    let flags = i32::from_str_radix(flags, 8).ok()?;
    Some(flags & libc::O_ACCMODE == libc::O_RDONLY)
}

/// Put a fresh, locked 0600 lockfile under `path` in place of `held` (the inode a
/// foreigner holds), atomically: the two names are exchanged, and only if the old name
/// then holds `held` is that one unlinked; if someone replaced the lockfile first, it is
/// swapped back untouched. Whoever opened the path meanwhile opened our fresh file and
/// blocks on it until we return; they find it gone, and start over, as after a janitor's
/// unlink. Returns whether `held` was replaced.
pub fn replace_foreign(path: &Path, held: &File) -> io::Result<bool> {
    let held = held.metadata()?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A name no tool takes for a lockfile (see `LockDir::domains`).
    let temp = dir.join(format!(".{name}.{}.replacing", std::process::id()));
    let fresh = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW)
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
    let ours = swapped_out.dev() == held.dev() && swapped_out.ino() == held.ino();
    if !ours {
        exchange(&temp, path)?;
    }
    fs::remove_file(&temp)?;
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightens_a_loose_lockfile_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let file = File::open(&path).unwrap();
        assert!(tighten(&file).unwrap());
        assert!(!tighten(&file).unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reads_the_access_mode_from_fdinfo() {
        assert_eq!(read_only("pos:\t0\nflags:\t02100000\n"), Some(true));
        assert_eq!(read_only("pos:\t0\nflags:\t02100002\n"), Some(false));
        assert_eq!(read_only("pos:\t0\n"), None);
    }

    #[test]
    fn our_own_holders_are_never_foreign() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        let file = File::create(&path).unwrap();
        file.lock().unwrap();
        let table = LockTable::read().unwrap();
        assert_eq!(foreign_holders(&file, &table), None);
    }

    #[test]
    fn a_replacement_leaves_a_fresh_file_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cc-ci-app-a.lock");
        fs::write(&path, "").unwrap();
        let old = File::open(&path).unwrap();
        assert!(replace_foreign(&path, &old).unwrap());
        let now = fs::metadata(&path).unwrap();
        assert_ne!(now.ino(), old.metadata().unwrap().ino());
        assert_eq!(now.permissions().mode() & 0o777, MODE);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        // Someone replaced it first: what is there now is swapped back, untouched.
        assert!(!replace_foreign(&path, &old).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().ino(), now.ino());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
