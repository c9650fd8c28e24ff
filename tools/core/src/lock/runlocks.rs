//! Which app locks *this run* holds, asked of the kernel.
//!
//! A run is a process tree: at its top the command `ccci-lock` exec'd (the harness), which
//! holds the app's lock; below it everything the harness starts. Three ways a process of
//! the run can stand under a domain's lock:
//!
//! * **own** — one of its own descriptors holds it: inherited from `ccci-lock` (a shell
//!   harness passes `CCCI_LOCK_FD` down to its children);
//! * **ancestor** — a process above it holds it: a Python harness starts its tools with
//!   `subprocess` defaults (`close_fds=True`), so the descriptor does not reach them, but
//!   the harness above still holds the lock;
//! * **kept** — a keeper (`ccci-lock --for-run D`, [`crate::lock::keeper`]) holds it for
//!   the rest of the run: a dependency app, taken while the harness runs. The keeper is
//!   not an ancestor of the tools that deploy D, but it holds a pidfd of the run's top,
//!   and that process *is* their ancestor.
//!
//! Every answer comes from `/proc`: `fdinfo` lists the locks owned by each open file
//! description (proc(5)), a descriptor's `fstat` names the inode, and a pidfd's `fdinfo`
//! names its process. Never from `CCCI_LOCK_FD` or `CCCI_LOCK_DOMAIN`: variables are
//! copied into processes that hold nothing (a Python child), and overwritten by a nested
//! lock. A process whose descriptors cannot be read (another user's) holds nothing as far
//! as this module can tell: the lock rule refuses rather than act on a guess.

use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;

use crate::child::tree::Stat;
use crate::domain::Domain;
use crate::lock::lockdir::{LockDir, domain_of};
use crate::lock::proclocks::{LockTable, exclusive_flock_in_fdinfo};

/// How this run holds a domain's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunHold {
    /// Through a descriptor of this very process.
    Own { fd: RawFd },
    /// Through a descriptor of an ancestor, `pid`.
    Ancestor { pid: i32 },
    /// Through a keeper, `keeper`, kept for the run whose top ([`run_top`]) is ours, `top`.
    Kept { keeper: i32, top: i32 },
}

impl std::fmt::Display for RunHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunHold::Own { fd } => write!(f, "fd {fd}"),
            RunHold::Ancestor { pid } => write!(f, "pid {pid}, above us"),
            RunHold::Kept { keeper, top } => write!(f, "kept by pid {keeper} for pid {top}"),
        }
    }
}

/// Whether this run holds `domain`'s lock in `dir`, and how (see the module comment).
/// `Ok(None)`: it does not — or the lockfile does not exist, which no holder allows.
/// An error only when our own descriptors cannot be read (`EMFILE`), or the kernel's lock
/// table cannot: the caller cannot tell, and must neither wait for itself nor act as the
/// holder.
pub fn held_by_this_run(dir: &LockDir, domain: &Domain) -> io::Result<Option<RunHold>> {
    if let Some(fd) = crate::lock::applock::inherited(dir, domain)? {
        return Ok(Some(RunHold::Own { fd }));
    }
    let Ok(named) = fs::symlink_metadata(dir.lockfile(domain)) else {
        return Ok(None);
    };
    let file = (named.dev(), named.ino());
    let above = ancestors(std::process::id() as i32);
    if let Some(&pid) = above.iter().find(|&&pid| holds(pid, file)) {
        return Ok(Some(RunHold::Ancestor { pid }));
    }
    // A keeper pins the top of the run it keeps for, not just any process: a holder with a
    // pidfd of some ancestor of ours (a supervisor above the run, or above a caller that is
    // in no run) keeps nothing for us.
    let Some(our_top) = run_top(dir) else {
        return Ok(None);
    };
    // The lock table names a device its own way (btrfs subvolumes): learn how it names
    // this one, which a tool that never ensured the lock dir (ccci-deploy) has not yet.
    crate::lock::proclocks::learn_device(dir.path());
    let table = LockTable::load()?;
    Ok(table.holders(&named).into_iter().find_map(|keeper| {
        let top = kept_for(keeper)?;
        (top == our_top && holds(keeper, file)).then_some(RunHold::Kept { keeper, top })
    }))
}

/// The top of the run this process is in: the highest of us and our ancestors that holds
/// an app lock in `dir` through its own descriptor (the harness `ccci-lock` exec'd; the
/// tools below it that inherited the descriptor are not the top). `None`: not in a run.
pub fn run_top(dir: &LockDir) -> Option<i32> {
    let me = std::process::id() as i32;
    std::iter::once(me)
        .chain(ancestors(me))
        .rev()
        .find(|&pid| holds_any(pid, dir))
}

/// Make every descriptor of ours that holds an exclusive flock close-on-exec; we keep it
/// open. What we start never needs the run's locks and must not hold them: what a hung
/// abra started outlives a killed `ccci-deploy` (until the guard sweeps it), and with the
/// descriptor ccci-lock handed down it would keep the domain held for the next run; a
/// keeper would keep the app's lock as long as the dependency's.
pub fn keep_locks_from_children() {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    for (fd, _) in crate::lock::proclocks::our_exclusive_flocks().unwrap_or_default() {
        // SAFETY: only the flags of a descriptor this process has open are changed.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}

/// `pid`'s ancestors, its parent first, up to (not including) pid 1 — and to the first
/// one out of sight.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut at = pid;
    while let Some(stat) = Stat::read(at) {
        if stat.ppid <= 1 || found.contains(&stat.ppid) {
            break;
        }
        found.push(stat.ppid);
        at = stat.ppid;
    }
    found
}

/// The files `pid`'s open file descriptions hold an exclusive flock on, as `(dev, ino)`
/// of `fstat` (not the lock table's device, which differs on btrfs). Empty when its
/// descriptors cannot be read.
fn exclusive_flocks(pid: i32) -> Vec<(u64, u64)> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let info = fs::read_to_string(entry.path()).ok()?;
            exclusive_flock_in_fdinfo(&info)?;
            let fd = entry.file_name();
            let meta = fs::metadata(format!("/proc/{pid}/fd/{}", fd.to_str()?)).ok()?;
            Some((meta.dev(), meta.ino()))
        })
        .collect()
}

/// Whether `pid` holds an exclusive flock on `file` through a descriptor of its own.
fn holds(pid: i32, file: (u64, u64)) -> bool {
    exclusive_flocks(pid).contains(&file)
}

/// Whether `pid` holds the lock on any current lockfile in `dir`.
fn holds_any(pid: i32, dir: &LockDir) -> bool {
    let held = exclusive_flocks(pid);
    if held.is_empty() {
        return false;
    }
    let Ok(entries) = fs::read_dir(dir.path()) else {
        return false;
    };
    entries.flatten().any(|entry| {
        domain_of(&entry.file_name()).is_some()
            && fs::symlink_metadata(entry.path()).is_ok_and(|m| held.contains(&(m.dev(), m.ino())))
    })
}

/// The process a keeper keeps its lock for: the one its pidfd names (`Pid:` in the
/// pidfd's `fdinfo`, Linux ≥ 5.4). `None` for a process that holds no pidfd.
fn kept_for(keeper: i32) -> Option<i32> {
    let entries = fs::read_dir(format!("/proc/{keeper}/fd")).ok()?;
    entries.flatten().find_map(|entry| {
        let target = fs::read_link(entry.path()).ok()?;
        if target.as_os_str() != "anon_inode:[pidfd]" {
            return None;
        }
        let fd = entry.file_name();
        let info = fs::read_to_string(format!("/proc/{keeper}/fdinfo/{}", fd.to_str()?)).ok()?;
        pidfd_pid(&info)
    })
}

/// The pid in a pidfd's `fdinfo` (`Pid:\t4242`); `-1` (gone) is no process.
fn pidfd_pid(fdinfo: &str) -> Option<i32> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("Pid:")?.trim().parse().ok())
        .filter(|&pid: &i32| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pid_of_a_pidfd() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t4242\nNSpid:\t4242\n";
        assert_eq!(pidfd_pid(info), Some(4242));
        assert_eq!(pidfd_pid("pos:\t0\nPid:\t-1\n"), None);
        assert_eq!(pidfd_pid("pos:\t0\n"), None);
    }

    #[test]
    fn our_ancestors_include_our_parent() {
        let parent = nix::unistd::getppid().as_raw();
        let above = ancestors(std::process::id() as i32);
        assert!(parent == 1 || above.first() == Some(&parent), "{above:?}");
    }
}
