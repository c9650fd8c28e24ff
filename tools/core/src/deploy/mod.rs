//! `ccci-deploy`, one concern a module. Each command: [`up`] (the deploy steps in
//! order), [`down`] (the lock rule, then a teardown), [`status`] (what exists of an app),
//! and `count` ([`count::deploys_in_run`]). [`rules`] is what they need of the run they
//! are in: the lock rule, the run dir's count file, an abra tree.
//!
//! What the commands are made of: [`count`] is the run's deploy counter, [`appenv`] the
//! app's `.env` file, [`args`] the checks of values before they reach a path or argv,
//! [`runner`] running abra, [`calls`] abra's command lines, flagged as cc-ci runs abra;
//! [`names`] checks the swarm names an app would make against docker's limits;
//! [`convergence`] waits for a deployed stack to settle, and says how it goes;
//! [`teardown`] removes an app whole (for `down` and the janitor).

pub mod appenv;
pub mod args;
pub mod calls;
pub mod convergence;
pub mod count;
pub mod down;
pub mod names;
pub mod rules;
pub mod runner;
pub mod status;
pub mod teardown;
pub mod up;

/// ccci-deploy's name, first word of its own diagnostics.
pub const TOOL: &str = "ccci-deploy";

// The paths callers have always used.
pub use appenv::{apply_sets, declared_secrets};
pub use args::{parse_recipe, parse_server, parse_set, parse_version};
pub use count::{DeployRecord, deploys, record_deploy};
pub use runner::{Abra, AbraError};
