//! `ccci-lock --for-run D`: take a dependency's lock for the rest of the run we are in
//! (`docs/lock.md`, "A run's dependencies"). The starter checks and starts a keeper
//! ([`start_keeper`]); the keeper ([`keep`], `--keeper`) takes the lock and holds it until
//! the run's top ends. How a keeper process is started and kept is [`crate::lock::keeper`].

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;

use anyhow::Context;

use crate::domain::Domain;
use crate::env::EnvVars;
use crate::exit::{Exit, signal_status};
use crate::lock::keeper::{self, Started};
use crate::lock::lockdir::LockDir;
use crate::lock::runlocks::{self, RunHold, held_by_this_run, run_top};
use crate::lock::session::{Session, TOOL, take};
use crate::say;

/// The starter: 0 at once when this run holds `domain` already; else start this program
/// again with `keeper_args` as the keeper, and end as it says (0 once it holds the lock,
/// else its own status).
pub fn start_keeper(
    session: &Session,
    domain: &Domain,
    keeper_args: &[OsString],
) -> anyhow::Result<i32> {
    let dir = &session.dir;
    dir.ensure()?;
    let held = held_by_this_run(dir, domain)
        .with_context(|| format!("cannot tell whether this run already holds {domain}"))?;
    if let Some(hold) = held {
        session.say_already_held(domain, hold);
        return Ok(Exit::Success.code());
    }
    run_top(dir).ok_or_else(|| not_in_a_run(dir))?;
    // The keeper holds what it takes, nothing of the run's.
    runlocks::keep_locks_from_children();
    let program = std::env::current_exe().context("cannot find this program to start a keeper")?;
    Ok(
        match keeper::start(&program, keeper_args).context("cannot start a keeper")? {
            Started::Held { .. } => Exit::Success.code(),
            Started::Ended(status) => status
                .code()
                .or_else(|| status.signal().map(signal_status))
                .unwrap_or(Exit::ToolFailed.code()),
        },
    )
}

/// The keeper: take `domain`'s lock for the run's top, say so, and hold it until that
/// top has ended; the status to exit with.
pub fn keep(session: &Session, domain: &Domain) -> anyhow::Result<i32> {
    let dir = &session.dir;
    dir.ensure()?;
    let top = run_top(dir).ok_or_else(|| not_in_a_run(dir))?;
    let pinned =
        keeper::pin(top).with_context(|| format!("cannot pin the run's top, pid {top}"))?;
    // Pinned by pid: if that pid ended and was reused meanwhile, it is not our run's.
    if run_top(dir) != Some(top) {
        return Err(not_in_a_run(dir));
    }
    let command = vec![TOOL.to_owned(), "--for-run".to_owned(), domain.to_string()];
    // Nothing to keep when a sibling keeper took it meanwhile (two `--for-run D` at once).
    let ours = |hold: RunHold| {
        session.say_already_held(domain, hold);
        Exit::Success.code()
    };
    let taken = match take(session, domain, command, Some(top), Some(&ours))? {
        Ok(taken) => taken,
        Err(not_acquired) => return Ok(not_acquired),
    };
    if !session.quiet {
        say!(
            "== app lock: acquired {domain}{} for the rest of this run (kept by pid {} until pid {top} ends) ==",
            taken.after(),
            std::process::id()
        );
    }
    keeper::keep_until_end(pinned).context("keeping the lock")?;
    drop(taken.lock);
    Ok(Exit::Success.code())
}

fn not_in_a_run(dir: &LockDir) -> anyhow::Error {
    anyhow::anyhow!(
        "not inside a run: no process above holds an app lock in {} — take the run's own app first (ccci-lock <app domain> -- <harness>), or set {} as the run does",
        dir.path().display(),
        EnvVars::CCCI_APP_LOCK_DIR
    )
}
