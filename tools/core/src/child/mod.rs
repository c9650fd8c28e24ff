//! Process control for a supervisor: spawn a command with its pre-exec set-up, forward
//! signals to its process group, sweep its descendants, reap.
//!
//! One place for all of it, so that no tool re-implements a piece and gets the subtle
//! parts wrong:
//!
//! * [`spawn`](mod@spawn) — fork, `setsid`, `PR_SET_PDEATHSIG`, the caller's signal mask and
//!   dispositions, exec, exec errors through a close-on-exec pipe;
//! * [`signal_group`] — `killpg(2)` where ESRCH (the group is already gone) is an answer,
//!   not an error: the old bash wrapper's `kill -- -$PID` under `sh -e` turned exactly
//!   that into red builds;
//! * [`tree`] — the descendants, found in O(descendants) through the subreaper's
//!   `/proc/<pid>/task/<tid>/children`, signalled through pidfds;
//! * [`sweep`] — TERM, grace, KILL for everything still alive after the command;
//! * [`reap`] — `waitpid(-1, WNOHANG)` until nothing is left to collect.

pub mod bounded;
pub mod exec;
pub mod spawn;
pub mod sweep;
pub mod tree;

pub use spawn::{Inherited, SpawnError, spawn};
pub use sweep::{Leftover, Sweep};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Send `signal` to process group `pgid`; `false` when the group no longer exists.
pub fn signal_group(pgid: Pid, signal: impl Into<Signo>) -> bool {
    // SAFETY: killpg(2) with a checked signal number; no memory is involved.
    let sent = unsafe { nix::libc::killpg(pgid.as_raw(), signal.into().raw()) };
    match Errno::result(sent) {
        Ok(_) => true,
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

/// Any signal by number: nix's `Signal` has no real-time signals, and `--signal` takes
/// them as timeout(1) does (`RTMIN+2`, `36`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signo(i32);

impl Signo {
    /// A signal this system has (1 to `SIGRTMAX`).
    pub fn new(signo: i32) -> Option<Signo> {
        (1..=nix::libc::SIGRTMAX())
            .contains(&signo)
            .then_some(Signo(signo))
    }

    pub fn raw(self) -> i32 {
        self.0
    }

    /// `TERM` for a named signal, the number for a real-time one.
    pub fn name(self) -> String {
        signo_name(self.0)
    }
}

impl From<Signal> for Signo {
    fn from(signal: Signal) -> Signo {
        Signo(signal as i32)
    }
}

/// A signal as `--signal` takes it: `TERM`, `SIGTERM`, `term`, `15`, or a real-time signal
/// as `RTMIN`, `RTMIN+2`, `RTMAX-1` or its number.
pub fn parse_signal(s: &str) -> Result<Signo, String> {
    let bad = || {
        format!("invalid signal {s:?} (expected a name like TERM, a number like 15, or RTMIN+N)")
    };
    if let Some(n) = digits(s) {
        return Signo::new(n).ok_or_else(bad);
    }
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(offset) = bare.strip_prefix("RTMIN") {
        return realtime(nix::libc::SIGRTMIN(), offset, '+').ok_or_else(bad);
    }
    if let Some(offset) = bare.strip_prefix("RTMAX") {
        return realtime(nix::libc::SIGRTMAX(), offset, '-').ok_or_else(bad);
    }
    format!("SIG{bare}")
        .parse::<Signal>()
        .map(Signo::from)
        .map_err(|_| bad())
}

/// `RTMIN`/`RTMAX` with an optional `+N`/`-N` (`sign`), kept within the real-time range.
fn realtime(base: i32, offset: &str, sign: char) -> Option<Signo> {
    let n: i32 = match offset {
        "" => 0,
        _ => digits(offset.strip_prefix(sign)?)?,
    };
    let signo = if sign == '+' {
        base.checked_add(n)?
    } else {
        base.checked_sub(n)?
    };
    (nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX())
        .contains(&signo)
        .then_some(Signo(signo))
}

/// A number written as digits only: `str::parse` also takes `+15`, which timeout(1)
/// does not.
fn digits(s: &str) -> Option<i32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM.into()));
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal::SIGKILL.into()));
        assert_eq!(parse_signal("int"), Ok(Signal::SIGINT.into()));
        assert_eq!(parse_signal("10"), Ok(Signal::SIGUSR1.into()));
        let (min, max) = (nix::libc::SIGRTMIN(), nix::libc::SIGRTMAX());
        assert_eq!(parse_signal("RTMIN").map(Signo::raw), Ok(min));
        assert_eq!(parse_signal("sigrtmin+2").map(Signo::raw), Ok(min + 2));
        assert_eq!(parse_signal("RTMAX-1").map(Signo::raw), Ok(max - 1));
        assert_eq!(parse_signal("RTMAX").map(Signo::raw), Ok(max));
        assert_eq!(parse_signal(&min.to_string()).map(Signo::raw), Ok(min));
        assert_eq!(parse_signal(&max.to_string()).map(Signo::raw), Ok(max));
        let beyond = [
            (max + 1).to_string(),
            format!("RTMIN+{}", max - min + 1),
            format!("RTMAX-{}", max - min + 1),
        ];
        for bad in [
            "", "NOPE", "0", "-1", "+15", "SIG", "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN+x",
            "RTMIN++1", "RTMAX-+1", " 15",
        ]
        .into_iter()
        .chain(beyond.iter().map(String::as_str))
        {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_name(Signal::SIGTERM), "TERM");
        assert_eq!(signo_name(9), "KILL");
        assert_eq!(signo_name(40), "40");
    }
}
