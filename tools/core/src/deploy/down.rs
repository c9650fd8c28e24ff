//! `ccci-deploy down`: the lock rule, then the app torn down whole ([`Teardown`]), and
//! by default listed again until nothing of it is left.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::rules;
use super::teardown::{Removed, Teardown, TeardownError};
use crate::domain::Domain;
use crate::exit::Failure;
use crate::lock::lockdir::LockDir;
use crate::swarm::docker::Docker;

/// How a teardown that ran to its end ended.
pub enum Down {
    /// Everything of the app is gone: what was removed, and how long it took.
    Removed { removed: Removed, took: Duration },
    /// The verifying listing still found these when `--timeout` ran out.
    Left(String),
}

/// Tear `domain` down within `timeout`; with `verify`, list again until nothing is left.
pub fn down(domain: &Domain, timeout: Duration, verify: bool) -> Result<Down, Failure> {
    rules::require_lock(domain)?;
    // Every docker call ends with --timeout: a hung one is killed.
    let docker = Docker::from_env().until(Instant::now() + timeout);
    docker.ping()?;
    let servers = crate::abra::servers(&rules::abra_dir()?);
    let teardown = Teardown {
        docker: &docker,
        domain,
        known: BTreeSet::new(),
        lock_dir: Some(LockDir::from_env()),
        servers_dir: servers,
        timeout,
    };
    let start = Instant::now();
    let removed = match verify {
        true => match teardown.run_verified() {
            Err(TeardownError::Left(left)) => return Ok(Down::Left(left)),
            other => other?,
        },
        false => teardown.run()?,
    };
    Ok(Down::Removed {
        removed,
        took: start.elapsed(),
    })
}
