//! Finding the guard's descendants, and signalling one of them without hitting a
//! recycled pid.
//!
//! Cost: the guard is a child subreaper, so every orphan of the command's tree is
//! reparented to it, and the descendants are exactly the processes reachable through
//! `/proc/<pid>/task/<tid>/children` (proc(5), `CONFIG_PROC_CHILDREN`) starting from the
//! guard. Walking that is O(descendants) — with no leftovers it is one read of one
//! empty file — where a scan of every `/proc/<pid>/stat` would cost O(processes on the
//! host) on every run. The scan is kept only as a fallback for kernels without the
//! children files.
//!
//! Identity: a pid read from /proc can be reaped and reused before we signal it. So each
//! process is pinned with `pidfd_open(2)` and then checked against the start time
//! (field 22 of `/proc/<pid>/stat`) read during the walk: if they agree, the pidfd refers
//! to the process we found, and `pidfd_send_signal(2)` can only ever reach it. Where the
//! kernel has no pidfds (before 5.3), or a seccomp profile refuses them, `kill(2)` after the
//! same check is the fallback. ESRCH is "already gone",
//! never an error.
//!
//! Descriptors: a pidfd is one open file, and the open-files limit (`ulimit -n 40`) may be
//! lower than the number of leftovers. A pidfd is *held* (for poll(2), and for each later
//! signal) only while that leaves [`FD_RESERVE`] descriptors free, for reading `/proc`
//! and the report: the sweep counts the descriptors actually free ([`spare_descriptors`])
//! — not the numbers above the lowest free one, which descriptors inherited from the
//! caller may occupy — and holds no more pidfds than that. A process pinned without one is signalled through a pidfd opened for
//! that one signal, checked against the start time as at pinning, and closed; should even
//! that fail (no descriptor at all), through `kill(2)` right after the same check. So
//! every leftover gets its TERM, whatever the limit.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub start_time: u64,
}

impl Stat {
    pub fn read(pid: i32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// `pid (comm) state ppid pgrp ... starttime(22) ...`; comm may hold spaces and
    /// parentheses, so it ends at the *last* `)`.
    pub fn parse(line: &str) -> Option<Stat> {
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        let pid = line[..open].trim().parse().ok()?;
        let comm = line.get(open + 1..close)?.to_owned();
        let mut rest = line.get(close + 1..)?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        let pgid = rest.next()?.parse().ok()?;
        // Fields 6..=21 lie between pgrp (5) and starttime (22).
        let start_time = rest.nth(16)?.parse().ok()?;
        Some(Stat {
            pid,
            comm,
            state,
            ppid,
            pgid,
            start_time,
        })
    }

    /// Dead and waiting to be reaped. The main thread shows `Z` as soon as *it* has
    /// exited, even while other threads of the process still run: such a process is
    /// alive, and must still be swept.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X') && !other_threads_alive(self.pid)
    }
}

fn other_threads_alive(pid: i32) -> bool {
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
}

/// Is process `pid` on its way out, though some of its threads may still run? Killed
/// (SIGKILL pending: the kernel sends it to every thread when one dies of a signal or
/// calls `exit_group(2)`), exiting (`PF_EXITING`), dead, or gone. Asked of its main
/// thread, which goes through each of these and then stays a zombie until the last
/// thread has gone. (Between taking SIGKILL and `PF_EXITING` lie a few microseconds
/// where it looks alive.)
pub fn is_exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // `pid (comm) state ppid pgrp session tty_nr tpgid flags ...`
    let mut rest = stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace();
    let state = rest.next().and_then(|s| s.chars().next());
    let flags = rest.nth(5).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    if matches!(state, Some('Z' | 'X')) || flags & PF_EXITING != 0 {
        return true;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status.lines().any(|line| {
        let pending = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        pending
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

/// Why `/proc` cannot show the guard its descendants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcProblem {
    /// Not mounted, or something else mounted there (a chroot, a sandbox that masks it):
    /// the walk would find no leftover, and the sweep would wait for them forever.
    #[error(
        "/proc is not a procfs (not mounted, or masked): the guard finds leftovers through it; mount one (mount -t proc proc /proc)"
    )]
    NotProcfs,
    /// The procfs of another pid namespace (`unshare -p` without `--mount-proc`): its
    /// pids are not the ones `pidfd_open(2)` and `kill(2)` take, so the walk would start
    /// at another process and the sweep would signal processes the guard never started.
    #[error(
        "/proc is not this pid namespace's (/proc/self is {seen}, the guard is pid {pid}): mount one (unshare --mount-proc)"
    )]
    ForeignNamespace { seen: String, pid: i32 },
}

/// Can `/proc` be trusted to show this process's descendants? Checked before the command
/// starts: the sweep depends on it, and a guard that cannot sweep must not run anything.
pub fn check_proc() -> Result<(), ProcProblem> {
    // SAFETY: statfs(2) fills the zeroed plain-data struct it is given, from a
    // NUL-terminated path.
    let procfs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/proc".as_ptr(), &mut fs) == 0 && fs.f_type == libc::PROC_SUPER_MAGIC
    };
    if !procfs {
        return Err(ProcProblem::NotProcfs);
    }
    let pid = std::process::id() as i32;
    // A procfs shows its own namespace's pids: there /proc/self names us by the pid
    // getpid(2) returns; another namespace's names us otherwise, or not at all.
    let seen = fs::read_link("/proc/self")
        .map(|link| link.display().to_string())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    if seen != pid.to_string() {
        return Err(ProcProblem::ForeignNamespace { seen, pid });
    }
    Ok(())
}

/// Every live (non-zombie) descendant of `root`, parents before their children.
pub fn descendants(root: Pid) -> Vec<Stat> {
    if fs::metadata(children_file(root.as_raw(), root.as_raw())).is_ok() {
        walk_children(root.as_raw())
    } else {
        scan_all(root.as_raw())
    }
}

fn children_file(pid: i32, tid: i32) -> String {
    format!("/proc/{pid}/task/{tid}/children")
}

fn walk_children(root: i32) -> Vec<Stat> {
    let mut found: Vec<Stat> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Ok(list) = fs::read_to_string(children_file(parent, tid)) else {
                continue;
            };
            for pid in list.split_whitespace().filter_map(|p| p.parse().ok()) {
                if found.iter().any(|s| s.pid == pid) {
                    continue;
                }
                if let Some(stat) = Stat::read(pid).filter(|s| !s.is_zombie()) {
                    parents.push(pid);
                    found.push(stat);
                }
            }
        }
    }
    found
}

/// The fallback: every process on the host, then the parent chains that lead to `root`.
fn scan_all(root: i32) -> Vec<Stat> {
    let all: Vec<Stat> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter_map(Stat::read)
                .collect()
        })
        .unwrap_or_default();
    let mut found: Vec<Stat> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for s in all.iter().filter(|s| s.ppid == parent && !s.is_zombie()) {
            parents.push(s.pid);
            found.push(s.clone());
        }
    }
    found
}

/// A process pinned for signalling: by a pidfd where the kernel has them.
#[derive(Debug)]
pub struct Pinned {
    pub stat: Stat,
    pidfd: Option<OwnedFd>,
}

impl Pinned {
    /// Pin `stat`'s process; `None` when it is already gone or the pid now names another
    /// process. `hold`: keep its pidfd (the caller has counted a descriptor to spare).
    pub fn pin(stat: Stat, hold: bool) -> Option<Pinned> {
        let pidfd = match pidfd_open(stat.pid) {
            Ok(fd) => Some(fd),
            Err(Errno::ESRCH) => return None,
            // No pidfds on this kernel, no descriptor to spare, or pidfds refused (a
            // seccomp profile answering EPERM, as Docker's did until 2020): pinned all
            // the same, and signalled as `signal` says. Not pinning it would leave it
            // without TERM or KILL, and the sweep waiting for it forever.
            Err(_) => None,
        };
        // Checked after pinning: if the start time still matches, the pidfd is this one.
        let now = Stat::read(stat.pid)?;
        if now.start_time != stat.start_time || now.is_zombie() {
            return None;
        }
        let pidfd = pidfd.filter(|_| hold);
        Some(Pinned { stat, pidfd })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.stat.pid)
    }

    /// The pidfd held, for poll(2): it becomes readable when the process has exited.
    pub fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// Send `signal`; `false` when the process was already gone.
    pub fn signal(&self, signal: Signal) -> bool {
        if let Some(fd) = &self.pidfd {
            return self.send_or_kill(fd, signal);
        }
        // None held: pin it again for this one signal, as `pin` does.
        match pidfd_open(self.stat.pid) {
            Ok(fd) => self.current().is_some() && self.send_or_kill(&fd, signal),
            Err(Errno::ESRCH) => false,
            // No pidfds, or no descriptor at all: the pid is checked just before.
            Err(_) => self.checked_kill(signal),
        }
    }

    /// Through the pidfd; where the kernel or a seccomp profile refuses that (ENOSYS,
    /// EPERM: `pidfd_open` allowed, `pidfd_send_signal` not), through `kill(2)` after the
    /// start-time check, so the process still gets its signal.
    fn send_or_kill(&self, fd: &OwnedFd, signal: Signal) -> bool {
        match pidfd_send_signal(fd, signal) {
            Ok(()) => true,
            Err(Errno::ESRCH) => false,
            Err(_) => self.checked_kill(signal),
        }
    }

    /// `kill(2)`, if the pid still names the process pinned. (It could name another one
    /// only if this one were reaped and its pid reused between the check and the kill: a
    /// window of a few microseconds, where no pidfd is to be had.)
    fn checked_kill(&self, signal: Signal) -> bool {
        self.current().is_some() && kill(self.pid(), signal).is_ok()
    }

    /// Has it exited (or been replaced by another process under the same pid)?
    pub fn is_gone(&self) -> bool {
        self.current().is_none()
    }

    /// What `/proc` says about it now; `None` once it has exited (or the pid names
    /// another process).
    pub fn current(&self) -> Option<Stat> {
        Stat::read(self.stat.pid)
            .filter(|now| now.start_time == self.stat.start_time && !now.is_zombie())
    }
}

/// Descriptors a sweep leaves free however many leftovers it pins: `/proc` reads, a pidfd
/// for one signal, the report.
pub const FD_RESERVE: usize = 16;

/// How many pidfds may be held now and still leave [`FD_RESERVE`] descriptors free: the
/// open-files limit less the descriptors open (counted in `/proc/self/fd`, the caller's
/// inherited ones included, wherever they sit in the range) and the reserve. 0 when that
/// cannot be told: holding none costs only a look at `/proc` every 10 ms.
pub fn spare_descriptors() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    // Less the one this listing has open.
    let open = fds.count().saturating_sub(1);
    usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(open)
        .saturating_sub(FD_RESERVE)
}

pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor, owned by nobody else (pidfds are close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(fd: &OwnedFd, signal: Signal) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal(2) with a null siginfo behaves like kill(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line =
            "4301 (ssh (mux) x) S 4242 4301 4301 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        let s = Stat::parse(line).unwrap();
        assert_eq!(s.pid, 4301);
        assert_eq!(s.comm, "ssh (mux) x");
        assert_eq!((s.state, s.ppid, s.pgid), ('S', 4242, 4301));
        assert_eq!(s.start_time, 98765);
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn this_proc_is_a_procfs_of_our_own_namespace() {
        assert_eq!(check_proc(), Ok(()));
    }

    #[test]
    fn tells_a_process_on_its_way_out() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!is_exiting(pid), "a sleeping process");
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        assert!(!is_exiting(pid), "a stopped process");
        // SIGKILL ends even a stopped process: from the kill on it is on its way out
        // (SIGKILL pending, exiting, or a zombie).
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        assert!(is_exiting(pid), "killed");
        child.wait().unwrap();
        assert!(is_exiting(pid), "reaped");
    }

    #[test]
    fn finds_a_live_child_and_pins_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = nix::unistd::getpid();
        let walked = descendants(me);
        let scanned = scan_all(me.as_raw());
        assert!(
            scanned.iter().any(|s| s.pid == child.id() as i32),
            "the fallback scan"
        );
        let stat = walked
            .into_iter()
            .find(|s| s.pid == child.id() as i32)
            .expect("the child is a descendant");
        assert_eq!(stat.comm, "sleep");
        let pinned = Pinned::pin(stat, true).expect("pinned");
        assert!(!pinned.is_gone());
        assert!(pinned.signal(Signal::SIGKILL));
        child.wait().unwrap();
        assert!(pinned.is_gone());
    }
}
