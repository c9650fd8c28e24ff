//! How a supervised command ended, and what the guard's exit status is for it.
//!
//! The order of guard.md item 8 lives in [`Ending::exit_status`] alone: the grace period
//! ran out and the guard had to SIGKILL the command (137), before the deadline (124, or the
//! command's own with `--preserve-status`), before the command's own status (128+N for a
//! signal, the code otherwise). Leftovers are listed but never change it.

use std::time::Duration;

use crate::child::{Ended, Signo};
use nix::unistd::Pid;

use crate::child::Leftover;
use crate::exit::{Exit, signal_status};

/// Why the guard started ending the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Deadline,
    Signal,
}

#[derive(Clone, Copy, Debug)]
pub struct Termination {
    pub cause: Cause,
    /// The signal sent to the command's group.
    pub signal: Signo,
    /// How long after the start.
    pub at: Duration,
}

/// How the command ended, and what the guard had to do about it.
#[derive(Clone, Debug)]
pub struct Ending {
    pub pid: Pid,
    pub started_at: String,
    pub ran_for: Duration,
    /// `Exited(code)` or `Signaled(signal)`.
    pub status: Ended,
    pub termination: Option<Termination>,
    /// The grace period ran out and the command died of the guard's SIGKILL.
    pub killed: bool,
    pub leftovers: Vec<Leftover>,
}

impl Ending {
    /// The command's status as a shell shows it: the code, or 128+N.
    pub fn command_status(&self) -> i32 {
        match self.status {
            Ended::Exited(code) => code,
            Ended::Signaled(signo) => signal_status(signo),
        }
    }

    pub fn deadline_fired(&self) -> bool {
        self.termination.is_some_and(|t| t.cause == Cause::Deadline)
    }

    /// The guard's exit status, in the order of guard.md item 8.
    pub fn exit_status(&self, preserve_status: bool) -> i32 {
        if self.killed {
            Exit::Killed.code()
        } else if self.deadline_fired() && !preserve_status {
            Exit::DeadlineReached.code()
        } else {
            self.command_status()
        }
    }

    pub fn outcome(&self) -> &'static str {
        match (self.killed, self.termination.map(|t| t.cause), self.status) {
            (true, _, _) => "killed",
            (_, Some(Cause::Deadline), _) => "deadline",
            (_, Some(Cause::Signal), _) => "terminated",
            (_, None, Ended::Signaled(_)) => "signaled",
            _ => "exited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    fn ending(status: Ended, cause: Option<Cause>, killed: bool) -> Ending {
        Ending {
            pid: Pid::from_raw(42),
            started_at: String::new(),
            ran_for: Duration::ZERO,
            status,
            termination: cause.map(|cause| Termination {
                cause,
                signal: Signal::SIGTERM.into(),
                at: Duration::ZERO,
            }),
            killed,
            leftovers: Vec::new(),
        }
    }

    #[test]
    fn exit_status_follows_the_documented_order() {
        let pid = Pid::from_raw(42);
        let _ = pid;
        let exited = Ended::Exited;
        let signaled = |s: Signal| Ended::Signaled(s as i32);
        let kill = signaled(Signal::SIGKILL);
        // (status, cause, killed) → (status, with --preserve-status, outcome)
        let cases = [
            (kill, Some(Cause::Deadline), true, 137, 137, "killed"),
            (kill, Some(Cause::Signal), true, 137, 137, "killed"),
            (
                signaled(Signal::SIGTERM),
                Some(Cause::Deadline),
                false,
                124,
                143,
                "deadline",
            ),
            (exited(0), Some(Cause::Deadline), false, 124, 0, "deadline"),
            (
                signaled(Signal::SIGTERM),
                Some(Cause::Signal),
                false,
                143,
                143,
                "terminated",
            ),
            (exited(3), Some(Cause::Signal), false, 3, 3, "terminated"),
            (kill, None, false, 137, 137, "signaled"),
            (signaled(Signal::SIGSEGV), None, false, 139, 139, "signaled"),
            (exited(0), None, false, 0, 0, "exited"),
            (exited(255), None, false, 255, 255, "exited"),
            (Ended::Signaled(34), None, false, 162, 162, "signaled"),
        ];
        for (status, cause, killed, plain, preserved, outcome) in cases {
            let e = ending(status, cause, killed);
            assert_eq!(e.exit_status(false), plain, "{status:?} {cause:?} {killed}");
            assert_eq!(
                e.exit_status(true),
                preserved,
                "{status:?} {cause:?} {killed}"
            );
            assert_eq!(e.outcome(), outcome, "{status:?} {cause:?} {killed}");
        }
    }
}
