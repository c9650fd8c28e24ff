//! The shared library of the ccci tools.
//!
//! Every tool is a thin `main.rs` over these modules, one concern each, so that the
//! lock protocol, the exit statuses and the names of the environment variables exist in
//! exactly one place: two tools that disagreed about any of them would not exclude each
//! other.

pub mod applock;
pub mod atomic;
pub mod bounded;
pub mod child;
pub mod cli;
pub mod convergence;
pub mod deploy;
pub mod docker;
pub mod domain;
pub mod duration;
pub mod ending;
pub mod env;
pub mod exec;
pub mod exit;
pub mod guard_log;
pub mod guard_report;
pub mod holder;
pub mod janitor;
pub mod janitor_report;
pub mod lockdir;
pub mod lockowner;
pub mod lockstatus;
pub mod proclocks;
pub mod removal;

pub mod rundir;
pub mod rungc;
pub mod runid;
pub mod shareddir;
pub mod supervise;
pub mod swarm;
pub mod teardown;
pub mod timefmt;
