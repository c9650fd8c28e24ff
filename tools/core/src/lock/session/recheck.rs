//! The rule for a wait inside a run: never wait for our own run.
//!
//! Inside a run, what we wait for may turn out to be our own run's: a keeper of it (two
//! `--for-run D` at once, or `--for-run D` beside `ccci-lock D -- cmd`) took the domain
//! while we waited, and we would wait for our own run — for ever, as it waits for us. So
//! at every wait event (at least every [`RECHECK`]) the kernel is asked again whether the
//! run holds the domain now; if so, the caller's `ours` says what to do instead, and the
//! process ends with its status. The flock still pending in the waiting thread goes with
//! it (at exit, or at exec: the lockfile is close-on-exec).

use std::time::Duration;

use super::TOOL;
use crate::diag;
use crate::domain::Domain;
use crate::exit::Exit;
use crate::lock::applock::WaitEvent;
use crate::lock::lockdir::LockDir;
use crate::lock::runlocks::{RunHold, held_by_this_run, run_top};

/// How often a wait inside a run looks whether the run holds the domain now.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// A wait inside a run, for `domain` in `dir`.
pub(super) struct Recheck<'a> {
    pub(super) dir: &'a LockDir,
    pub(super) domain: &'a Domain,
    /// The run top a keeper takes the lock for (`--for-run`), whose end stops the wait.
    pub(super) kept_for: Option<i32>,
    /// What to do when our own run holds the domain: its status is the process's.
    pub(super) ours: &'a dyn Fn(RunHold) -> i32,
}

impl Recheck<'_> {
    /// Look again on `event` (while blocked), and end the process if the wait is over.
    pub(super) fn look(&self, event: &WaitEvent<'_>) {
        if !matches!(
            event,
            WaitEvent::Blocked { .. } | WaitEvent::StillWaiting { .. }
        ) {
            return;
        }
        if let Ok(Some(hold)) = held_by_this_run(self.dir, self.domain) {
            std::process::exit((self.ours)(hold));
        }
        // A keeper whose run ended while it waited (the harness was killed; its starter
        // lives on, orphaned) has nobody to keep the lock for: it must not take it.
        if let Some(top) = self.kept_for.filter(|&top| run_top(self.dir) != Some(top)) {
            diag!(
                TOOL,
                "the run (pid {top}) ended while waiting for {} — not taking it",
                self.domain
            );
            std::process::exit(Exit::ToolFailed.code());
        }
    }
}
