//! `ccci-lock D -- CMD`: run a command under a domain's lock, from the lock dir to the
//! exec, a run that holds the domain already included.

use std::ffi::OsString;

use anyhow::Context;

use super::exec::{exec_held_above, exec_holding};
use super::{Session, take};
use crate::domain::Domain;
use crate::lock::runlocks::{RunHold, held_by_this_run, run_top};
use crate::say;

/// Take `domain`'s lock and exec `command` holding it; the status to exit with when the
/// lock is not acquired or the command cannot be exec'd (returning means it was not).
pub fn run_command(
    session: &Session,
    domain: &Domain,
    command: &[OsString],
) -> anyhow::Result<i32> {
    let dir = &session.dir;
    dir.ensure()?;
    // Nested in a run that holds the domain already: waiting would be waiting for
    // ourselves, forever.
    let held = held_by_this_run(dir, domain)
        .with_context(|| format!("cannot tell whether this run already holds {domain}"))?;
    match held {
        Some(hold @ RunHold::Own { fd }) => {
            session.say_already_held(domain, hold);
            return Ok(exec_holding(command, fd, &dir.lockfile(domain), domain));
        }
        Some(hold) => return Ok(exec_held_above(session, command, domain, hold)),
        None => {}
    }
    // The command as the holder record names it.
    let recorded = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Inside a run, what we wait for may turn out to be our own run's (a keeper of it
    // took the domain while we waited): then run the command as if it had been so at once.
    let ours = |hold: RunHold| exec_held_above(session, command, domain, hold);
    let recheck = run_top(dir).map(|_| &ours as &dyn Fn(RunHold) -> i32);
    let taken = match take(session, domain, recorded, None, recheck)? {
        Ok(taken) => taken,
        Err(not_acquired) => return Ok(not_acquired),
    };
    let file = taken.lock.path().to_owned();
    let after = taken.after();
    let fd = taken.lock.into_inherited_fd()?;
    if !session.quiet {
        say!("== app lock: acquired {domain}{after} ==");
    }
    Ok(exec_holding(command, fd, &file, domain))
}
