//! The pieces of `ccci-deploy` that are not the swarm's: [`count`] is the run's deploy
//! counter, [`appenv`] the app's `.env` file, [`args`] the checks of values before they
//! reach a path or argv, [`runner`] running abra.
//!
//! [`calls`] are abra's command lines, flagged as cc-ci runs abra; [`names`] checks the
//! swarm names an app would make against docker's limits; [`convergence`] waits for a
//! deployed stack to settle; [`teardown`] removes an app whole.

pub mod appenv;
pub mod args;
pub mod calls;
pub mod convergence;
pub mod count;
pub mod names;
pub mod runner;
pub mod teardown;

use std::path::PathBuf;

use crate::env::{EnvVars, non_empty};

// The paths callers have always used.
pub use appenv::{apply_sets, declared_secrets};
pub use args::{parse_recipe, parse_server, parse_set, parse_version};
pub use count::{DeployRecord, deploys, record_deploy};
pub use runner::{Abra, AbraError};

/// The abra tree `ccci-deploy` works in: `$ABRA_DIR` (in a run, `ccci-rundir` sets it to
/// the run's private tree), else the host's canonical tree that `ccci-rundir` links runs
/// to and the janitor reads (`CCCI_CANONICAL_ABRA_DIR`, else `$HOME/.abra`). abra is run
/// with `ABRA_DIR` set to it, so what abra writes is what ccci reads.
pub fn abra_dir() -> Option<PathBuf> {
    non_empty(EnvVars::ABRA_DIR)
        .map(PathBuf::from)
        .or_else(|| crate::env::canonical_abra_dir_from_env().ok())
}
