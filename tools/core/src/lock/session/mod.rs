//! A `ccci-lock` session: what the command line asks of the app lock, done and reported
//! the way `ccci-lock` says it (`docs/lock.md`; the `==` lines and diagnostics are part of
//! the contract, and the e2e suite reads them).
//!
//! One concern a module: `take.rs` takes a domain's lock as the options say (waiting,
//! the holder record, giving up, the old layer's lockfile after ours); `waitlines.rs` is
//! the lines said while waiting; `recheck.rs` is the rule for a wait inside a run (stop
//! when our own run got the domain meanwhile); `legacy_hold.rs` holds the old layer's
//! lockfile for the command; `exec.rs` execs the command with the variables that name its
//! lock; `command.rs` is `ccci-lock D -- CMD` from the lock dir to the exec, nested runs
//! included. `--for-run` (the starter and the keeper) is [`crate::lock::for_run`].

use std::ffi::OsString;
use std::time::Duration;

use crate::domain::Domain;
use crate::lock::lockdir::LockDir;
use crate::lock::runlocks::RunHold;

mod command;
mod exec;
mod legacy_hold;
mod recheck;
mod take;
mod waitlines;

pub use command::run_command;
pub(crate) use take::take;

/// `ccci-lock`'s name, first word of its own diagnostics.
pub const TOOL: &str = "ccci-lock";

/// The options every mode that takes a lock shares, as given (`tools/lock/cli.rs`).
/// They are resolved only when a lock is taken: a domain the run holds already is not
/// waited for, so a bad `CCCI_LOCK_WAIT` or run id does not stop it.
#[derive(Debug)]
pub struct Session {
    pub dir: LockDir,
    /// `-n`: not waiting at all.
    pub no_wait: bool,
    /// `-w`: how long to wait (`CCCI_LOCK_WAIT` when unset, else forever).
    pub wait: Option<Duration>,
    /// `--run-id` (`DRONE_BUILD_NUMBER` when unset), for the holder record.
    pub run_id: Option<OsString>,
    /// `--progress-interval`: how often the waiting line is repeated.
    pub progress: Duration,
    /// `-q`: no `==` lines (diagnostics still print).
    pub quiet: bool,
    /// `-E`: the status when the lock is not acquired.
    pub conflict_exit_code: u8,
}

impl Session {
    /// The line for a domain this run holds already, which is therefore not waited for:
    /// `== app lock: D is already held by this run (fd 3) ==` (or `pid P, above us`, or
    /// `kept by pid K for pid T`).
    pub fn say_already_held(&self, domain: &Domain, hold: RunHold) {
        if !self.quiet {
            crate::say!("== app lock: {domain} is already held by this run ({hold}) ==");
        }
    }
}
