//! Process control for a supervisor: spawn a command with its pre-exec set-up, forward
//! signals to its process group, sweep its descendants, reap.
//!
//! One place for all of it, so that no tool re-implements a piece and gets the subtle
//! parts wrong:
//!
//! * [`spawn`] — fork, `setsid`, `PR_SET_PDEATHSIG`, the caller's signal mask and
//!   dispositions, exec, exec errors through a close-on-exec pipe;
//! * [`signal_group`] — `killpg(2)` where ESRCH (the group is already gone) is an answer,
//!   not an error: the old bash wrapper's `kill -- -$PID` under `sh -e` turned exactly
//!   that into red builds;
//! * [`tree`] — the descendants, found in O(descendants) through the subreaper's
//!   `/proc/<pid>/task/<tid>/children`, signalled through pidfds;
//! * [`sweep`] — TERM, grace, KILL for everything still alive after the command;
//! * [`reap`] — `waitpid(-1, WNOHANG)` until nothing is left to collect.

pub mod spawn;
pub mod sweep;
pub mod tree;

pub use spawn::{Inherited, SpawnError, spawn};
pub use sweep::{Leftover, Sweep};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Send `signal` to process group `pgid`; `false` when the group no longer exists.
pub fn signal_group(pgid: Pid, signal: Signal) -> bool {
    match killpg(pgid, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        // EPERM: a member changed its credentials (a setuid program); the others were
        // still signalled, and the sweep will find that one.
        Err(_) => true,
    }
}

/// How a child ended: its exit code, or the number of the signal that killed it (any
/// number: nix's `WaitStatus` cannot hold a real-time signal, and a command killed by one
/// must still be reported, not lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// What one round of reaping found.
#[derive(Debug, Default)]
pub struct Reaped {
    /// How `watched` ended, if it was among those collected.
    pub watched: Option<Ended>,
    /// Whether the guard still has children (alive, or exited since this call).
    pub children_left: bool,
}

/// Collect every child that has exited (the command, and orphans reparented to the
/// subreaper), without blocking.
///
/// At most [`REAP_BATCH`] per call: a tree that forks and exits faster than we reap would
/// otherwise keep us here, and the deadline, signals and the sweep would wait. The
/// caller's loop comes back for the rest.
pub fn reap(watched: Pid) -> Reaped {
    let mut reaped = Reaped::default();
    for _ in 0..REAP_BATCH {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local; WNOHANG never blocks.
        let pid = unsafe { nix::libc::waitpid(-1, &mut status, nix::libc::WNOHANG) };
        match pid {
            0 => {
                reaped.children_left = true;
                return reaped;
            }
            -1 if Errno::last() == Errno::EINTR => {}
            -1 => return reaped, // ECHILD: nobody left
            pid => {
                let ended = if nix::libc::WIFEXITED(status) {
                    Ended::Exited(nix::libc::WEXITSTATUS(status))
                } else if nix::libc::WIFSIGNALED(status) {
                    Ended::Signaled(nix::libc::WTERMSIG(status))
                } else {
                    continue;
                };
                if pid == watched.as_raw() {
                    reaped.watched = Some(ended);
                }
            }
        }
    }
    reaped.children_left = true;
    reaped
}

/// How many children one call of [`reap`] collects at most.
pub const REAP_BATCH: usize = 64;

/// Name of a signal as the logs and the report write it: `TERM`, not `SIGTERM`.
pub fn signal_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// Name of a signal number, or the number itself for real-time signals.
pub fn signo_name(signo: i32) -> String {
    Signal::try_from(signo)
        .map(|s| signal_name(s).to_owned())
        .unwrap_or_else(|_| signo.to_string())
}

/// A signal as `--signal` takes it: `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let bad = || format!("invalid signal {s:?} (expected a name like TERM or a number like 15)");
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("int"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("10"), Ok(Signal::SIGUSR1));
        for bad in ["", "NOPE", "0", "99", "-1", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_name(Signal::SIGTERM), "TERM");
        assert_eq!(signo_name(9), "KILL");
        assert_eq!(signo_name(40), "40");
    }
}
