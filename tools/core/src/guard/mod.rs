//! `ccci-guard`: one command, a deadline, a grace period, nothing left behind
//! (`docs/guard.md`). [`supervise`] is the event loop; `signals` the signals it blocks
//! and reads, `parent` its parent's death told from a thread's end (both private to the
//! loop); [`ending`] how the command ended and the status that follows, [`log`] the
//! guard's never-stalling log lines, [`report`] its JSON report.

/// The guard's name, first word of its own lines.
pub const TOOL: &str = "ccci-guard";

pub mod ending;
pub mod log;
mod parent;
pub mod report;
mod signals;
pub mod supervise;
