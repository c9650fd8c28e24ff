//! What `ccci-deploy` needs of the run it is in before it acts, each refused with 78 (the
//! pipeline is wired wrong) when missing: the lock rule (`up` and `down` only under
//! DOMAIN's app lock), the run dir's deploy count file, and an abra tree.

use std::path::PathBuf;

use crate::domain::Domain;
use crate::env::{EnvVars, non_empty};
use crate::exit::{Exit, Failure};
use crate::lock::lockdir::LockDir;
use crate::lock::runlocks;

/// The lock rule: up and down run only while holding DOMAIN's app lock, so a deploy can
/// never be counted or made before the lock is taken.
pub fn require_lock(domain: &Domain) -> Result<(), Failure> {
    match runlocks::held_by_this_run(&LockDir::from_env(), domain) {
        Ok(Some(_)) => {
            runlocks::keep_locks_from_children();
            Ok(())
        }
        // Cannot tell (EMFILE): never act as the holder on a guess.
        Err(e) => Err(Failure::with(
            Exit::Unavailable,
            anyhow::anyhow!("cannot tell whether this run holds the app lock for {domain}: {e}"),
        )),
        Ok(None) => Err(Failure::with(
            Exit::Misconfigured,
            anyhow::anyhow!(
                "not holding the app lock for {domain} — run under 'ccci-lock {domain} -- ...'"
            ),
        )),
    }
}

/// The run's deploy count file (`CCCI_DEPLOY_COUNT_FILE`, set by ccci-rundir): `up`
/// counts into it, `count` reads it.
pub fn count_file() -> Result<PathBuf, Failure> {
    non_empty(EnvVars::CCCI_DEPLOY_COUNT_FILE)
        .map(PathBuf::from)
        .ok_or_else(|| {
            Failure::with(
                Exit::Misconfigured,
                anyhow::anyhow!(
                    "{} is not set — run under 'ccci-rundir -- ...'",
                    EnvVars::CCCI_DEPLOY_COUNT_FILE
                ),
            )
        })
}

/// The abra tree `ccci-deploy` works in: `$ABRA_DIR` (in a run, `ccci-rundir` sets it to
/// the run's private tree), else the host's canonical tree that `ccci-rundir` links runs
/// to and the janitor reads (`CCCI_CANONICAL_ABRA_DIR`, else `$HOME/.abra`). abra is run
/// with `ABRA_DIR` set to it, so what abra writes is what ccci reads.
pub fn abra_dir() -> Result<PathBuf, Failure> {
    non_empty(EnvVars::ABRA_DIR)
        .map(PathBuf::from)
        .or_else(|| crate::env::canonical_abra_dir_from_env().ok())
        .ok_or_else(|| {
            Failure::with(
                Exit::Misconfigured,
                anyhow::anyhow!(
                    "no abra tree: neither ABRA_DIR, {} nor HOME is set",
                    EnvVars::CCCI_CANONICAL_ABRA_DIR
                ),
            )
        })
}
