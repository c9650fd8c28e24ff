//! Running an external command (docker, abra) with a bound on how long it may take.
//!
//! A docker that hangs (a wedged daemon, a stuck plugin) must not hang the tool that
//! called it: the janitor would keep an orphan's app lock for ever, and `--timeout`
//! would mean nothing. So every call gets a [`Bound`] — what is left of the tool's
//! `--timeout`, or [`DEFAULT`] for a call outside any — and a command still running when
//! it runs out is killed and reported, naming the bound.
//!
//! * The command runs in a process group of its own (`setpgid` at spawn), so one
//!   `killpg(SIGKILL)` also ends a child it started that keeps our pipe open.
//! * Its output is read on threads as it comes, so a command that writes more than a
//!   pipe holds never waits on us, and we never wait on a pipe that does not close.
//! * Its exit is awaited with `waitid(WNOWAIT)` on a thread: the zombie stays until we
//!   reap it ourselves, after the `killpg`, so the group id cannot have been reused by
//!   then.
//! * `PR_SET_PDEATHSIG(SIGKILL)`: a tool killed while it waits takes the command along
//!   (in its own group, the command would not get the terminal's Ctrl-C).

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// The bound of a call made outside any `--timeout` (`ccci-deploy status`, the
/// janitor's discovery unless its `--timeout` is shorter): docker answers a listing in
/// well under a second, and a minute leaves room for a loaded host.
pub const DEFAULT: Duration = Duration::from_secs(60);

/// What a call started close to a deadline still gets, at most up to `deadline + SLACK`:
/// the last convergence poll or the report of what did not converge must not be killed
/// for starting a moment before the end. Nothing runs past `deadline + SLACK`.
pub const SLACK: Duration = Duration::from_secs(5);

/// How long a killed command's exit is waited for: SIGKILL cannot be caught, but a
/// process in uninterruptible sleep dies only when its system call returns.
const REAP_AFTER_KILL: Duration = Duration::from_secs(2);

/// How long external commands may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Each call may take this long.
    Each(Duration),
    /// Every call must end by this instant (with [`SLACK`] for one started near it).
    Until(Instant),
}

impl Default for Bound {
    fn default() -> Bound {
        Bound::Each(DEFAULT)
    }
}

impl Bound {
    /// How long a call starting now may take; `None` when nothing is left.
    pub fn left(&self) -> Option<Duration> {
        self.left_at(Instant::now())
    }

    fn left_at(&self, now: Instant) -> Option<Duration> {
        let left = match *self {
            Bound::Each(each) => each,
            Bound::Until(deadline) => {
                let to_deadline = deadline.saturating_duration_since(now);
                let to_slack_end = (deadline + SLACK).saturating_duration_since(now);
                to_deadline.max(to_slack_end.min(SLACK))
            }
        };
        (!left.is_zero()).then_some(left)
    }
}

/// Why a command did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not be started: {0}")]
    Start(io::Error),
    #[error("did not finish within {} — killed", crate::duration::format(*.0))]
    Killed(Duration),
    #[error("was not run: the time allowed (--timeout) had run out")]
    NoTime,
}

/// A command running in its own process group, and the threads reading its pipes.
pub struct Running {
    child: Child,
    pgid: Pid,
    /// One message when the command has exited, one per reader at its end of file.
    events: mpsc::Receiver<()>,
    sender: mpsc::Sender<()>,
    readers: usize,
    bound: Duration,
}

/// Start `cmd` (its stdio set by the caller) in a process group of its own, to be ended
/// within `bound`. `cmd` is consumed: the copies of pipe ends it holds must close, or a
/// reader would never see the end of the output.
pub fn spawn(mut cmd: Command, bound: Bound) -> Result<Running, RunError> {
    let bound = bound.left().ok_or(RunError::NoTime)?;
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe, and nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::libc::prctl(
                nix::libc::PR_SET_PDEATHSIG,
                nix::libc::SIGKILL as nix::libc::c_ulong,
            );
            // We died before the prctl: no signal would ever come.
            if nix::libc::getppid() != parent {
                return Err(io::Error::other("the parent is gone"));
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(RunError::Start)?;
    drop(cmd);
    let pgid = Pid::from_raw(child.id() as i32);
    let (sender, events) = mpsc::channel();
    let mut running = Running {
        child,
        pgid,
        events,
        sender,
        readers: 0,
        bound,
    };
    let exited = running.sender.clone();
    let waiter = thread::Builder::new()
        .name("ccci-waitid".into())
        .spawn(move || {
            // Leaves the zombie in place: it is reaped by `wait`, after any killpg.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pgid), flags) {}
            let _ = exited.send(());
        });
    if let Err(e) = waiter {
        running.kill();
        return Err(RunError::Start(e));
    }
    Ok(running)
}

impl Running {
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Read `pipe` on a thread with `read` until its end; [`Running::wait`] waits for
    /// that too. What `read` learns goes out through what it captured (an `Arc`), so
    /// nothing waits for a thread whose pipe a stray process keeps open.
    pub fn read<R: Read + Send + 'static>(
        &mut self,
        pipe: Option<R>,
        read: impl FnOnce(R) + Send + 'static,
    ) -> Result<(), RunError> {
        let Some(pipe) = pipe else { return Ok(()) };
        let done = self.sender.clone();
        let reader = thread::Builder::new()
            .name("ccci-read".into())
            .spawn(move || {
                read(pipe);
                let _ = done.send(());
            });
        match reader {
            Ok(_) => {
                self.readers += 1;
                Ok(())
            }
            Err(e) => {
                self.kill();
                Err(RunError::Start(e))
            }
        }
    }

    /// Wait until the command has exited and its output has ended, or the bound runs
    /// out: then its whole process group is killed, and it is reaped.
    pub fn wait(mut self) -> Result<ExitStatus, RunError> {
        let deadline = Instant::now() + self.bound;
        let mut pending = 1 + self.readers;
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(()) => pending -= 1,
                Err(_) => {
                    self.kill();
                    return Err(RunError::Killed(self.bound));
                }
            }
        }
        // Exited (a zombie until now): this reaps it, at once.
        self.child.wait().map_err(RunError::Start)
    }

    /// SIGKILL the process group, reap the command, and wait until nothing of the group
    /// runs any more: a signal is delivered at once, but a process dies when it is next
    /// scheduled, and what we report as killed must be gone.
    fn kill(&mut self) {
        crate::child::signal_group(self.pgid, Signal::SIGKILL);
        // One that cannot die (uninterruptible sleep) stays behind rather than block us.
        let end = Instant::now() + REAP_AFTER_KILL;
        let mut pause = Duration::from_millis(1);
        let mut reaped = false;
        while Instant::now() < end {
            reaped = reaped || !matches!(self.child.try_wait(), Ok(None));
            if reaped && !group_runs(self.pgid) {
                return;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether a live process (not a zombie) is in process group `pgid`. Its members that
/// outlive the command are no children of ours (they go to init or a subreaper), so
/// only `/proc` can tell. Read only after a kill, never on the common path.
fn group_runs(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = pgid.as_raw().to_string();
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold anything, up to the last `)`.
        let mut fields = stat
            .rsplit_once(") ")
            .map(|(_, f)| f)
            .unwrap_or("")
            .split(' ');
        let state = fields.next();
        fields.nth(1) == Some(pgid.as_str()) && !matches!(state, Some("Z" | "X"))
    })
}

/// How much of one stream [`collect`] keeps. A listing of a busy swarm is a few MB; a
/// command that prints without end must not eat the host's memory until its bound (the
/// OOM killer might pick dockerd, or a live run): past this, output is read and dropped,
/// and what was kept no longer parses — an error naming the command.
pub const MAX_KEPT: usize = 64 << 20;

/// A reader that appends what it reads to `into`, up to [`MAX_KEPT`] bytes, and drains
/// the rest (so the command never blocks on a full pipe).
pub fn collect<R: Read>(into: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> impl FnOnce(R) {
    move |mut pipe: R| {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut kept = into.lock().unwrap_or_else(|e| e.into_inner());
                    let room = MAX_KEPT.saturating_sub(kept.len()).min(n);
                    kept.extend(&buf[..room]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    fn captured(script: &str, bound: Bound) -> (Result<ExitStatus, RunError>, Vec<u8>) {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut running = spawn(cmd, bound).unwrap();
        let stdout = running.child().stdout.take();
        let stderr = running.child().stderr.take();
        running.read(stdout, collect(out.clone())).unwrap();
        running
            .read(stderr, collect(Arc::new(Mutex::new(Vec::new()))))
            .unwrap();
        let result = running.wait();
        let out = out.lock().unwrap().clone();
        (result, out)
    }

    #[test]
    fn output_without_end_is_kept_only_up_to_the_cap_and_still_drained() {
        let script = format!("head -c {} /dev/zero; echo end >&2", MAX_KEPT + (1 << 20));
        let (result, out) = captured(&script, Bound::Each(Duration::from_secs(60)));
        assert!(result.unwrap().success());
        assert_eq!(out.len(), MAX_KEPT);
    }

    #[test]
    fn output_larger_than_a_pipe_on_both_streams_is_read() {
        let script = "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2; echo end";
        let (result, out) = captured(script, Bound::Each(Duration::from_secs(30)));
        assert!(result.unwrap().success());
        assert_eq!(out.len(), 300004);
    }

    #[test]
    fn a_hung_command_and_the_child_holding_its_pipe_are_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let pids = tmp.path().join("pids");
        let script = format!(
            "sleep 1000 & echo $$ $! > '{}'; exec sleep 1000",
            pids.display()
        );
        let start = Instant::now();
        let (result, _) = captured(&script, Bound::Each(Duration::from_secs(1)));
        let err = result.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10), "{err}");
        assert_eq!(err.to_string(), "did not finish within 1s — killed");
        let pids = std::fs::read_to_string(&pids).unwrap();
        for pid in pids.split_whitespace() {
            // Gone, or a zombie waiting for init: not running.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.split(' ').next());
            assert!(
                stat.is_empty() || state == Some("Z"),
                "{pid} still there: {stat}"
            );
        }
    }

    #[test]
    fn a_deadline_leaves_slack_for_a_call_started_near_it() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let until = |d| Bound::Until(now + d).left_at(now);
        assert_eq!(until(s(30)), Some(s(30)));
        assert_eq!(until(s(2)), Some(SLACK), "near the deadline");
        assert_eq!(until(s(0)), Some(SLACK));
        let past = |d| Bound::Until(now).left_at(now + d);
        assert_eq!(past(s(2)), Some(s(3)), "never past deadline + SLACK");
        assert_eq!(past(SLACK), None);
        assert_eq!(Bound::Each(s(7)).left_at(now), Some(s(7)));
        assert!(matches!(
            spawn(Command::new("true"), Bound::Until(now - s(60))),
            Err(RunError::NoTime)
        ));
    }
}
