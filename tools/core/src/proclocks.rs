//! Who the kernel says holds a flock: `/proc/locks` (proc(5)).
//!
//! Holder metadata is only what the last holder wrote: after it exits the file keeps it,
//! so a lock taken since by `flock(1)` (which writes nothing) would be reported under a
//! dead pid. The kernel's lock table names the process that placed each lock, and for a
//! `ccci-lock` holder that is the command's pid too (exec keeps the pid). Lines look like
//!
//! ```text
//! 1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010679 0 EOF
//! 1: -> FLOCK  ADVISORY  WRITE 4300 fe:00:10010679 0 EOF
//! ```
//!
//! where `->` marks a blocked request and the device is `major:minor` in hex.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The granted flocks of the whole host, read once: a janitor pass over thousands of
/// lockfiles asks about each, and re-reading the table every time would cost
/// O(locks²).
#[derive(Debug, Default)]
pub struct LockTable {
    holders: HashMap<(String, u64), Vec<i32>>,
}

impl LockTable {
    /// `None` when the table cannot be read (then the metadata is all there is).
    pub fn read() -> Option<LockTable> {
        fs::read_to_string("/proc/locks")
            .ok()
            .map(|t| LockTable::parse(&t))
    }

    fn parse(table: &str) -> LockTable {
        let mut holders: HashMap<(String, u64), Vec<i32>> = HashMap::new();
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // id, FLOCK, ADVISORY, type, pid, maj:min:ino, ... (blocked requests: `->`)
            if let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() {
                let (Ok(pid), Some((dev, ino))) = (pid.parse(), file.rsplit_once(':')) else {
                    continue;
                };
                let Ok(ino) = ino.parse() else { continue };
                holders.entry((dev.to_owned(), ino)).or_default().push(pid);
            }
        }
        LockTable { holders }
    }

    /// The pids holding a granted flock on the file `meta` describes.
    pub fn holders(&self, meta: &fs::Metadata) -> Vec<i32> {
        self.holders_of(meta.dev(), meta.ino())
    }

    fn holders_of(&self, dev: u64, ino: u64) -> Vec<i32> {
        self.holders
            .get(&(dev_key(dev), ino))
            .cloned()
            .unwrap_or_default()
    }

    /// Files of `dir` that were unlinked while someone held a flock on them: each one's
    /// name, with the processes that hold it through a descriptor still open on it.
    ///
    /// Only flocks on `dir`'s device whose inode no entry of `dir` has are looked into,
    /// and each of their holders' `/proc/<pid>/fd` is read once: nothing to read in the
    /// normal case, and O(their descriptors) — not locks × descriptors — when another
    /// directory on the same filesystem has many held locks.
    pub fn held_unlinked(&self, dir: &Path) -> Vec<(OsString, OpenBy)> {
        let (Ok(canonical), Ok(meta)) = (fs::canonicalize(dir), fs::metadata(dir)) else {
            return Vec::new();
        };
        let present: HashSet<u64> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok().map(|m| m.ino()))
            .collect();
        let dev = dev_key(meta.dev());
        let mut suspects: HashMap<i32, HashSet<u64>> = HashMap::new();
        for ((lock_dev, ino), pids) in &self.holders {
            if *lock_dev == dev && !present.contains(ino) {
                for &pid in pids {
                    suspects.entry(pid).or_default().insert(*ino);
                }
            }
        }
        let mut found = Vec::new();
        for (pid, inodes) in suspects {
            for (name, ino) in unlinked_in(pid, &canonical, meta.dev()) {
                if inodes.contains(&ino) {
                    found.push((name, OpenBy::of(pid)));
                }
            }
        }
        found.sort_by(|a, b| (&a.0, a.1.pid).cmp(&(&b.0, b.1.pid)));
        found.dedup();
        found
    }
}

/// `/proc/locks` names a device as `major:minor` in hex.
fn dev_key(dev: u64) -> String {
    format!(
        "{:02x}:{:02x}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    )
}

/// The unlinked files of `dir` (on `dev`) that `pid` has open: `(name, inode)`, from its
/// `/proc/<pid>/fd` links, which read `<dir>/<name> (deleted)`. Only links that read so
/// are stat'ed.
fn unlinked_in(pid: i32, dir: &Path, dev: u64) -> Vec<(OsString, u64)> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let name = target
                .strip_prefix(dir)
                .ok()?
                .to_str()?
                .strip_suffix(" (deleted)")?
                .to_owned();
            if name.contains('/') {
                return None;
            }
            let meta = fs::metadata(fd.path()).ok()?;
            (meta.dev() == dev && meta.nlink() == 0).then(|| (OsString::from(name), meta.ino()))
        })
        .collect()
}

/// The pids holding a granted flock on the file `meta` describes; `None` when the lock
/// table cannot be read.
pub fn flock_holders(meta: &fs::Metadata) -> Option<Vec<i32>> {
    LockTable::read().map(|t| t.holders(meta))
}

/// The file an exclusive flock of *this* open file description is on, from its
/// `/proc/<pid>/fdinfo/<fd>`: the kernel lists there, as `lock:` lines in the format of
/// `/proc/locks`, the locks owned by that very description — not others on the inode.
/// Returns the `(dev, ino)` of the locked file.
pub fn exclusive_flock_in_fdinfo(fdinfo: &str) -> Option<(u64, u64)> {
    fdinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.strip_prefix("lock:")?.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, "WRITE", _, file, ..] => {
                let mut parts = file.split(':');
                let major = u64::from_str_radix(parts.next()?, 16).ok()?;
                let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
                let ino = parts.next()?.parse().ok()?;
                Some((nix::sys::stat::makedev(major, minor), ino))
            }
            _ => None,
        }
    })
}

/// A process that has a file open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenBy {
    pub pid: i32,
    pub comm: String,
}

impl OpenBy {
    fn of(pid: i32) -> OpenBy {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        OpenBy {
            pid,
            comm: comm.trim().to_owned(),
        }
    }
}

/// Every process with a descriptor open on `path` (scanning `/proc/*/fd`): who leaks a
/// lock when its holder has been gone for hours. Costly (every fd of every process), so
/// only for locks already judged stale.
pub fn processes_with_open(path: &std::path::Path) -> Vec<OpenBy> {
    // By inode, not by name: the lock dir may be reached through a symlink
    // (/var/lock -> /run/lock), and `/proc/<pid>/fd/<n>` shows the canonical path.
    let Ok(target) = fs::metadata(path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for proc in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let has_it = fs::read_dir(proc.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::metadata(fd.path())
                    .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
            });
        if has_it {
            found.push(OpenBy::of(pid));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_granted_flocks_on_the_inode_and_skips_waiters() {
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let table = "\
1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010679 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4300 fe:00:10010679 0 EOF
2: POSIX  ADVISORY  WRITE 17 fe:00:10010679 0 EOF
3: FLOCK  ADVISORY  READ 99 fe:00:555 0 EOF
4: FLOCK  ADVISORY  WRITE 98 fe:01:10010679 0 EOF
";
        let t = LockTable::parse(table);
        assert_eq!(t.holders_of(dev, 10010679), [4242]);
        assert_eq!(t.holders_of(dev, 555), [99]);
        assert!(t.holders_of(dev, 1).is_empty());
    }

    #[test]
    fn finds_the_processes_with_a_file_open() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let open = processes_with_open(tmp.path());
        assert!(
            open.iter().any(|o| o.pid == std::process::id() as i32),
            "{open:?}"
        );
    }

    #[test]
    fn fdinfo_tells_an_exclusive_flock_of_this_description() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let fdinfo =
            || fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
        assert_eq!(exclusive_flock_in_fdinfo(&fdinfo()), None);
        file.lock_shared().unwrap();
        assert_eq!(
            exclusive_flock_in_fdinfo(&fdinfo()),
            None,
            "shared is not exclusive"
        );
        file.lock().unwrap();
        let (dev, ino) = exclusive_flock_in_fdinfo(&fdinfo()).expect("exclusive lock listed");
        assert_eq!((dev, ino), (meta.dev(), meta.ino()));
        // Another description of the same file does not own that lock.
        let other = fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", other.as_raw_fd())).unwrap();
        assert_eq!(exclusive_flock_in_fdinfo(&info), None);
    }

    #[test]
    fn finds_a_held_lockfile_that_was_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let held = fs::File::create(dir.path().join("cc-ci-app-a.lock")).unwrap();
        held.lock().unwrap();
        let kept = fs::File::create(dir.path().join("cc-ci-app-b.lock")).unwrap();
        kept.lock().unwrap();
        let table = LockTable::read().unwrap();
        assert!(
            table.held_unlinked(dir.path()).is_empty(),
            "nothing unlinked yet"
        );
        fs::remove_file(dir.path().join("cc-ci-app-a.lock")).unwrap();
        let table = LockTable::read().unwrap();
        let found = table.held_unlinked(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "cc-ci-app-a.lock");
        assert_eq!(found[0].1.pid, std::process::id() as i32);
        // Released: nobody holds it any more.
        drop(held);
        let table = LockTable::read().unwrap();
        assert!(table.held_unlinked(dir.path()).is_empty());
    }

    #[test]
    fn sees_a_real_flock() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(flock_holders(&meta), Some(vec![]));
        file.lock().unwrap();
        assert_eq!(flock_holders(&meta), Some(vec![std::process::id() as i32]));
    }
}
