//! Taking a domain's lock as the options say, and saying why when it is not taken.

use std::time::{Duration, Instant};

use super::legacy_hold::hold_legacy;
use super::recheck::{RECHECK, Recheck};
use super::waitlines::say_waits;
use super::{Session, TOOL};
use crate::domain::Domain;
use crate::env::{EnvVars, non_empty};
use crate::lock::applock::{Acquisition, AppLock, Wait, WaitEvent};
use crate::lock::holder::{Holder, pid_and_run};
use crate::lock::proclocks;
use crate::lock::runlocks::RunHold;
use crate::run::runid::RunId;
use crate::{diag, duration};

/// A lock taken: ours, and how long we waited for it (or for the old layer's), if at all.
pub(crate) struct Taken {
    pub(crate) lock: AppLock,
    pub(crate) waited: Option<Duration>,
}

impl Taken {
    /// ` after 12s` when we waited, for the "acquired" line; empty when we did not.
    pub(crate) fn after(&self) -> String {
        self.waited.map_or_else(String::new, |w| {
            format!(" after {}", duration::format_secs(w))
        })
    }
}

impl Session {
    /// How long to wait: `-n`, else `-w`, else `CCCI_LOCK_WAIT`, else forever (0: not at all).
    fn wait(&self) -> anyhow::Result<Wait> {
        let wait_env = non_empty(EnvVars::CCCI_LOCK_WAIT)
            .map(|v| {
                duration::parse(&v.to_string_lossy())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", EnvVars::CCCI_LOCK_WAIT))
            })
            .transpose()?;
        Ok(match self.wait.or(wait_env) {
            _ if self.no_wait => Wait::No,
            Some(d) if d.is_zero() => Wait::No,
            Some(d) => Wait::For(d),
            None => Wait::Forever,
        })
    }
}

/// Take `domain`'s lock as `session` says, reporting the wait, its holder record naming
/// `command` (and `kept_for`, a keeper's run top); then, while the host switches, the old
/// layer's lockfile too. `Err(status)` when it was not acquired (`-n`, `-w`), after
/// saying who holds it. Inside a run, `ours` says what to do instead when our own run
/// turns out to hold the domain while we wait (see `recheck.rs`): the process then ends
/// with its status.
pub(crate) fn take(
    session: &Session,
    domain: &Domain,
    command: Vec<String>,
    kept_for: Option<i32>,
    ours: Option<&dyn Fn(RunHold) -> i32>,
) -> anyhow::Result<Result<Taken, i32>> {
    let dir = &session.dir;
    let run_id = RunId::or_drone_build(session.run_id.clone())?;
    let wait = session.wait()?;
    let recheck = ours.map(|ours| Recheck {
        dir,
        domain,
        kept_for,
        ours,
    });
    let mut say_wait = say_waits(domain, session.quiet, recheck.is_some(), session.progress);
    let mut report = |event: WaitEvent<'_>| {
        if let Some(recheck) = &recheck {
            recheck.look(&event);
        }
        say_wait(event)
    };
    let mut holder = Holder::new_for_this_process(
        Some(domain.as_str()),
        run_id.as_ref().map(RunId::as_str),
        TOOL,
        command,
    );
    holder.kept_for = kept_for;
    // Events come at least every RECHECK inside a run, so the recheck looks that often;
    // the waiting lines still come every --progress-interval (waitlines.rs).
    let progress = if recheck.is_some() {
        session.progress.min(RECHECK)
    } else {
        session.progress
    };
    let conflict = i32::from(session.conflict_exit_code);
    let start = Instant::now();
    let (lock, waited) = match AppLock::acquire(dir, domain, wait, progress, &holder, &mut report)?
    {
        Acquisition::Held { lock, waited } => (lock, waited),
        Acquisition::Busy { holder, waited } => {
            let (pid, run) = pid_and_run(holder.as_ref());
            diag!(
                TOOL,
                "{domain} is held by pid {pid} (run {run}) — {}",
                wait.how_it_ended(waited)
            );
            return Ok(Err(conflict));
        }
        Acquisition::BusyUnlinked { holders, waited } => {
            diag!(
                TOOL,
                "{domain} is held by {} through a lockfile that was removed by hand — {}",
                proclocks::describe(&holders),
                wait.how_it_ended(waited)
            );
            return Ok(Err(conflict));
        }
    };
    // Switching from the old layer: its lockfile too, after ours, for the whole run.
    let legacy = hold_legacy(session, domain, wait, start, progress);
    Ok(match legacy {
        Ok(legacy_waited) => Ok(Taken {
            lock,
            waited: waited.or(legacy_waited.map(|_| start.elapsed())),
        }),
        Err(code) => Err(code),
    })
}
