//! `ccci-guard`: one command, a deadline, a grace period, nothing left behind
//! (`docs/guard.md`). [`supervise`] is the event loop, [`ending`] how the command ended
//! and the status that follows, [`log`] the guard's never-stalling log lines, [`report`]
//! its JSON report.

pub mod ending;
pub mod log;
pub mod report;
pub mod supervise;
