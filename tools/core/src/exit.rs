//! Exit statuses: one table for the whole project (`docs/exit-codes.md`).
//!
//! The wrappers (guard, rundir, lock) keep 0–124 free for the command they run, so their
//! own failures use the 125–127 range as `timeout(1)`, `env(1)` and `nice(1)` do; the
//! non-wrappers (deploy, janitor) use the sysexits.h values an operator already knows.

/// A status a ccci tool exits with on its own account (the wrapped command's own status
/// passes through untouched and is not listed here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Success = 0,
    /// Done, but something failed (a reap, a convergence, a count check).
    Failure = 1,
    /// Usage error of a non-wrapper (deploy, janitor).
    Usage = 2,
    /// A service the tool needs is unavailable (EX_UNAVAILABLE): docker, abra.
    Unavailable = 69,
    /// The lock was not acquired (EX_TEMPFAIL); `ccci-lock -E` changes it.
    Conflict = 75,
    /// The pipeline is wired wrong (EX_CONFIG): deploy outside its lock or run dir.
    Misconfigured = 78,
    /// The guard's deadline fired and the command then exited.
    DeadlineReached = 124,
    /// The tool itself failed, usage errors of a wrapper included.
    ToolFailed = 125,
    /// The command exists but could not be executed.
    CannotExecute = 126,
    /// The command was not found.
    NotFound = 127,
    /// The grace period ran out and the guard had to SIGKILL the command (128 + 9).
    Killed = 137,
}

impl Exit {
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// End the process with this status, flushing stdout first.
    pub fn exit(self) -> ! {
        std::process::exit(self.code())
    }
}

/// A tool's failure: what went wrong, and — where the failure itself decides it — the
/// status the tool exits with. Every tool's `main.rs` ends at [`crate::cli::run_tool`],
/// which prints the error once, named with the tool, and exits with that status or the
/// tool's own default (125 for a wrapper, 1 for deploy and the janitor).
#[derive(Debug)]
pub struct Failure {
    pub exit: Option<Exit>,
    pub error: anyhow::Error,
}

impl Failure {
    /// A failure that exits with `exit` whatever the tool.
    pub fn with(exit: Exit, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            exit: Some(exit),
            error: error.into(),
        }
    }
}

/// Any error becomes a failure through `?`. Its status is chosen here for the errors that
/// decide it themselves in every tool: docker or abra unreachable is 69 (sysexits'
/// EX_UNAVAILABLE); anything else gets the tool's default.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        let error = e.into();
        let unavailable = error
            .downcast_ref::<crate::swarm::docker::DockerError>()
            .is_some_and(|d| d.is_unavailable())
            || matches!(
                error.downcast_ref::<crate::deploy::AbraError>(),
                Some(crate::deploy::AbraError::Unavailable { .. })
            );
        Failure {
            exit: unavailable.then_some(Exit::Unavailable),
            error,
        }
    }
}

/// `result.or_exit(Exit::Usage)?`: this error, whatever it is, exits with `exit`.
pub trait OrExit<T> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure::with(exit, e))
    }
}

/// The shell's status for a command killed by signal `signo`: 128 + N. It is a
/// convention for reporting, never a re-raise of the signal.
pub const fn signal_status(signo: i32) -> i32 {
    128 + signo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_documented_table() {
        let table = [
            (Exit::Success, 0),
            (Exit::Failure, 1),
            (Exit::Usage, 2),
            (Exit::Unavailable, 69),
            (Exit::Conflict, 75),
            (Exit::Misconfigured, 78),
            (Exit::DeadlineReached, 124),
            (Exit::ToolFailed, 125),
            (Exit::CannotExecute, 126),
            (Exit::NotFound, 127),
            (Exit::Killed, 137),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(signal_status(15), 143);
        assert_eq!(signal_status(9), Exit::Killed.code());
    }
}
