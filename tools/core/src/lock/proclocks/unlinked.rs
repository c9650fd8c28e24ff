//! Lockfiles removed (or moved) by hand while held: the flocks on the lock dir's device
//! whose inode no entry of the dir has, and the processes that hold them through a
//! descriptor still open on them (`/proc/<pid>/fd`).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::device::{DirId, dev_key, learn_device};
use super::open_by::{OpenBy, all_pids, out_of_sight};
use super::table::LockTable;

impl LockTable {
    /// Files of `dir` that were unlinked while someone held a flock on them: each one's
    /// name, with the processes that hold it through a descriptor still open on it.
    ///
    /// Only a flock on `dir`'s device whose inode no entry of `dir` has is looked into, so
    /// this costs nothing in the normal case. Its holders' `/proc/<pid>/fd` are read once
    /// each, however many locks they hold. The table names the process that *placed* a
    /// lock: when that one no longer has the file open (it exited and a child that
    /// inherited the descriptor holds on, as `ccci-lock D -- sh -c 'cmd &'` does) or is
    /// out of sight (another PID namespace: pid 0), every process is looked at, once.
    ///
    /// An error when the directory or a process cannot be looked at (other than one that
    /// has gone, or one we may not see): "cannot tell" is never "nobody".
    pub fn held_unlinked(
        &self,
        dir: &Path,
        lockfile: &dyn Fn(&OsStr) -> bool,
    ) -> io::Result<Vec<(OsString, OpenBy)>> {
        Ok(self.scan(dir, lockfile, false)?.unlinked)
    }

    /// As [`held_unlinked`](Self::held_unlinked), and also the flocks on `dir`'s device
    /// that no process in sight has a descriptor for (their holder is in a PID namespace
    /// we cannot see, say): such a lock may be any domain's, and only who cannot reap
    /// wrongly may ignore it. Costs a `stat` of every descriptor of every process when a
    /// lock's placer no longer has it open — for the janitor, not for every acquire.
    pub fn held_unlinked_or_untraced(
        &self,
        dir: &Path,
        lockfile: &dyn Fn(&OsStr) -> bool,
    ) -> io::Result<Scan> {
        let scan = self.scan(dir, lockfile, true)?;
        if scan.untraced.is_empty() {
            return Ok(scan);
        }
        // A holder that exited while we looked leaves nothing to trace: only locks still
        // held now count.
        let now = LockTable::load()?;
        let dev = fs::metadata(dir)?.dev();
        // And only locks that may be a run's: one placed by a process still alive whose
        // user ids are neither root nor ours (another local user, holding some file of
        // this filesystem it may read) cannot be — runs are started by the lock dir's
        // owner. Unknown placers (gone, pid 0) may be.
        let me = nix::unistd::geteuid().as_raw();
        let untraced = scan
            .untraced
            .into_iter()
            .filter(|u| !now.holders_of(dev, u.ino).is_empty())
            .filter(|u| !u.pids.iter().all(|&pid| placed_by_another_user(pid, me)))
            .collect();
        Ok(Scan { untraced, ..scan })
    }

    fn scan(&self, dir: &Path, lockfile: &dyn Fn(&OsStr) -> bool, trace: bool) -> io::Result<Scan> {
        learn_device(dir);
        let mut scan = Scan::default();
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            // No lock dir: no lockfile was ever removed from it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(e),
        };
        let dev = dev_key(meta.dev());
        let on_dev: Vec<(u64, &Vec<i32>)> = self
            .holders
            .iter()
            .filter(|((d, _), _)| *d == dev)
            .map(|((_, ino), pids)| (*ino, pids))
            .collect();
        if on_dev.is_empty() {
            return Ok(scan);
        }
        // Present: a lockfile under a lockfile's name (`lockfile`), or one of our own
        // dot-files (`.retire.lock`). A held file there under any other name was renamed
        // by hand: it is looked into like one removed.
        let mut present: HashSet<u64> = HashSet::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if lockfile(&name) || name.as_encoded_bytes().starts_with(b".") {
                present.insert(std::os::unix::fs::DirEntryExt::ino(&entry));
            }
        }
        let missing: HashMap<u64, &Vec<i32>> = on_dev
            .into_iter()
            .filter(|(ino, _)| !present.contains(ino))
            .collect();
        if missing.is_empty() {
            return Ok(scan);
        }
        let dir = DirId {
            dev: meta.dev(),
            ino: meta.ino(),
            canonical: fs::canonicalize(dir).ok(),
        };
        let found = &mut scan.unlinked;
        let mut looked: HashSet<i32> = HashSet::new();
        let mut open: HashSet<u64> = HashSet::new();
        let placers: std::collections::BTreeSet<i32> =
            missing.values().flat_map(|p| p.iter().copied()).collect();
        for pid in placers {
            looked.insert(pid);
            let fds = open_files(pid, &dir, &missing, lockfile, true)?;
            open.extend(fds.open);
            found.extend(fds.unlinked.into_iter().map(|n| (n, OpenBy::of(pid))));
        }
        if missing.keys().any(|ino| !open.contains(ino)) {
            for pid in all_pids()?.filter(|p| !looked.contains(p)) {
                let fds = open_files(pid, &dir, &missing, lockfile, trace)?;
                open.extend(fds.open);
                found.extend(fds.unlinked.into_iter().map(|n| (n, OpenBy::of(pid))));
            }
        }
        found.sort_by(|a, b| (&a.0, a.1.pid).cmp(&(&b.0, b.1.pid)));
        found.dedup();
        if trace {
            scan.untraced = missing
                .iter()
                .filter(|(ino, _)| !open.contains(ino))
                .map(|(ino, pids)| Untraced {
                    ino: *ino,
                    pids: (*pids).clone(),
                })
                .collect();
            scan.untraced.sort_by_key(|u| u.ino);
        }
        Ok(scan)
    }
}

/// What [`LockTable::held_unlinked_or_untraced`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Names of lockfiles unlinked while held, with who holds each.
    pub unlinked: Vec<(OsString, OpenBy)>,
    /// Flocks on the lock dir's device that no descriptor in sight explains.
    pub untraced: Vec<Untraced>,
}

/// A flock nobody in sight has a descriptor for: its inode, and the pids `/proc/locks`
/// gives for it (0: in a PID namespace we cannot see).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Untraced {
    pub ino: u64,
    pub pids: Vec<i32>,
}

/// What one process has open among `missing`: which of those inodes (only when `all`:
/// that costs a `stat` of every descriptor), and the names of the lockfiles of `dir`
/// among them that were unlinked.
struct OpenFiles {
    open: Vec<u64>,
    unlinked: Vec<OsString>,
}

fn open_files(
    pid: i32,
    dir: &DirId,
    missing: &HashMap<u64, &Vec<i32>>,
    lockfile: &dyn Fn(&OsStr) -> bool,
    all: bool,
) -> io::Result<OpenFiles> {
    let mut files = OpenFiles {
        open: Vec::new(),
        unlinked: Vec::new(),
    };
    let fds = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(fds) => fds,
        Err(e) if out_of_sight(&e) => return Ok(files),
        Err(e) => return Err(e),
    };
    for fd in fds {
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) if out_of_sight(&e) => continue,
            Err(e) => return Err(e),
        };
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.into_os_string().into_vec();
        let deleted = target.strip_suffix(b" (deleted)");
        let shown = PathBuf::from(OsString::from_vec(deleted.unwrap_or(&target).to_vec()));
        let named_like_ours = shown.file_name().is_some_and(lockfile);
        // Sockets, pipes and anonymous inodes are no files of a directory. Without `all`,
        // only what can be a lockfile of ours: removed, or under a lockfile's name.
        if !target.starts_with(b"/") || (!all && deleted.is_none() && !named_like_ours) {
            continue;
        }
        let Ok(meta) = fs::metadata(fd.path()) else {
            continue;
        };
        if meta.dev() != dir.dev || !missing.contains_key(&meta.ino()) {
            continue;
        }
        // A lockfile others could open is never run on (lockowner.rs): whoever holds one,
        // removed or moved, is not a run of ours.
        if crate::lock::lockowner::is_loose(&meta) {
            files.open.push(meta.ino());
            continue;
        }
        let (Some(parent), Some(name)) = (shown.parent(), shown.file_name()) else {
            continue;
        };
        // Where the file now is, as far as it can be told: in the lock dir, near it (an
        // operator's `mv` to tidy up: under the lock dir, beside it in its parent, or in
        // the lock dir moved aside as `cc-ci.old`), or in a tree since detached (`umount
        // -l` of a bind of the lock dir: the path says nothing of its directory any more).
        // Not anywhere else: other lock dirs on the device (a test's) are not ours.
        let in_dir = dir.is(pid, parent);
        let near = dir
            .canonical
            .as_deref()
            .is_some_and(|lock_dir| near(parent, lock_dir));
        let detached = detached(pid, &fd.file_name());
        if (deleted.is_some() || !in_dir) && named_like_ours && (in_dir || near || detached) {
            // Removed, or moved away, while held: by its name, the domain's (the caller
            // keeps only `cc-ci-app-<domain>.lock`).
            files.open.push(meta.ino());
            files.unlinked.push(name.to_owned());
        } else if in_dir || detached {
            // Renamed by hand in the lock dir (or removed under another name): the holder
            // record inside says whose it is; without one, nothing explains it.
            if let Some(domain) =
                crate::lock::holder::Holder::read_path(&fd.path()).and_then(|h| h.domain)
            {
                files.open.push(meta.ino());
                // A record naming no valid domain names no lockfile of ours.
                if let Ok(domain) = crate::domain::Domain::parse(&domain) {
                    let name = crate::lock::lockdir::lockfile_name(&domain);
                    files.unlinked.push(name);
                }
            }
        } else {
            // A file elsewhere (another program's lock on this device): explained.
            files.open.push(meta.ino());
        }
    }
    Ok(files)
}

/// Whether `parent` is where an operator tidying `lock_dir` by hand would have moved a
/// lockfile: under it, beside it, or under a sibling named after it (`cc-ci.old`).
fn near(parent: &Path, lock_dir: &Path) -> bool {
    let (Some(up), Some(name)) = (lock_dir.parent(), lock_dir.file_name()) else {
        return false;
    };
    parent.starts_with(lock_dir)
        || parent == up
        || parent
            .strip_prefix(up)
            .ok()
            .and_then(|rest| rest.iter().next())
            .is_some_and(|first| {
                first
                    .as_encoded_bytes()
                    .starts_with(name.as_encoded_bytes())
            })
}

/// Whether `pid`'s descriptor `fd` was opened through a mount that is no longer in its
/// mount table (`mnt_id` in its fdinfo, proc(5)): its path is relative to a detached tree.
fn detached(pid: i32, fd: &std::ffi::OsStr) -> bool {
    let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.display())) else {
        return false;
    };
    let Some(mnt_id) = info.lines().find_map(|l| l.strip_prefix("mnt_id:")) else {
        return false;
    };
    let mnt_id = mnt_id.trim();
    fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|table| {
        !table
            .lines()
            .any(|l| l.split_whitespace().next() == Some(mnt_id))
    })
}

/// Whether `pid` is alive and none of its user ids (real, effective, saved, filesystem)
/// is root or `me`.
fn placed_by_another_user(pid: i32, me: u32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let ids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.len() == 4 && ids.iter().all(|&u| u != 0 && u != me)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As lockdir names them.
    fn lockfile_name(name: &OsStr) -> bool {
        name.to_str()
            .is_some_and(|n| n.starts_with("cc-ci-app-") && n.ends_with(".lock"))
    }

    #[test]
    fn a_moved_lockfile_is_near_only_where_an_operator_would_put_it() {
        let lock_dir = Path::new("/run/lock/cc-ci");
        for (parent, is_near) in [
            ("/run/lock/cc-ci/old", true),
            ("/run/lock", true),
            ("/run/lock/cc-ci.old", true),
            ("/run/lock/cc-ci.old/x", true),
            ("/run/lock/other", false),
            ("/run", false),
            ("/tmp/cc-ci", false),
        ] {
            assert_eq!(near(Path::new(parent), lock_dir), is_near, "{parent}");
        }
    }

    #[test]
    fn finds_a_held_lockfile_that_was_unlinked() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        // 0600, as lockfiles are made: a 0644 one is an older build's, passed over.
        let create = |name: &str| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.path().join(name))
                .unwrap()
        };
        let held = create("cc-ci-app-a.lock");
        held.lock().unwrap();
        let kept = create("cc-ci-app-b.lock");
        kept.lock().unwrap();
        let old = create("cc-ci-app-c.lock");
        old.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        old.lock().unwrap();
        fs::remove_file(dir.path().join("cc-ci-app-c.lock")).unwrap();
        let table = LockTable::read().unwrap();
        assert!(
            table
                .held_unlinked(dir.path(), &lockfile_name)
                .unwrap()
                .is_empty(),
            "nothing unlinked yet"
        );
        fs::remove_file(dir.path().join("cc-ci-app-a.lock")).unwrap();
        let table = LockTable::read().unwrap();
        let found = table.held_unlinked(dir.path(), &lockfile_name).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "cc-ci-app-a.lock");
        assert_eq!(found[0].1.pid, std::process::id() as i32);
        // Released: nobody holds it any more.
        drop(held);
        let table = LockTable::read().unwrap();
        assert!(
            table
                .held_unlinked(dir.path(), &lockfile_name)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn flocks_held_elsewhere_on_the_device_cost_one_look_at_their_holder() {
        // One process holding thousands of flocks on the lock dir's filesystem (another
        // tool's lock dir, a benchmark): its descriptors are read once, not once per lock.
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        const N: u64 = 3000;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        if soft < N + 200 {
            setrlimit(Resource::RLIMIT_NOFILE, hard.min(N + 1000), hard).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let (locks, other) = (tmp.path().join("locks"), tmp.path().join("other"));
        fs::create_dir(&locks).unwrap();
        fs::create_dir(&other).unwrap();
        let held: Vec<fs::File> = (0..N)
            .map(|i| {
                let f = fs::File::create(other.join(format!("cc-ci-app-x{i}.lock"))).unwrap();
                f.lock().unwrap();
                f
            })
            .collect();
        let table = LockTable::read().unwrap();
        let start = std::time::Instant::now();
        assert!(
            table
                .held_unlinked(&locks, &lockfile_name)
                .unwrap()
                .is_empty()
        );
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
        drop(held);
    }
}
