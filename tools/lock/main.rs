//! ccci-lock: one run per app domain — take the domain's flock, show who we wait for,
//! verify the inode, then exec the command with the lock inherited.
#![no_main]

mod cli;

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::Context;

use ccci_core::child::exec;
use ccci_core::cli::{emit, parse_or_exit, run_tool};
use ccci_core::domain::Domain;
use ccci_core::env::{EnvVars, non_empty};
use ccci_core::exit::{Exit, Failure, signal_status};
use ccci_core::lock::applock::{Acquisition, AppLock, Wait, WaitEvent};
use ccci_core::lock::holder::{Holder, describe, pid_and_run};
use ccci_core::lock::keeper::{self, Started};
use ccci_core::lock::legacy::{LegacyError, LegacyLocks};
use ccci_core::lock::lockdir::LockDir;
use ccci_core::lock::lockstatus;
use ccci_core::lock::proclocks::OpenBy;
use ccci_core::lock::runlocks::{self, RunHold, held_by_this_run, run_top};
use ccci_core::run::runid::RunId;
use ccci_core::{diag, duration, say, wrapper_main};
use cli::{Cli, TOOL};

wrapper_main!(lock_main);

fn lock_main() -> i32 {
    let cli: Cli = parse_or_exit(TOOL, Exit::ToolFailed);
    let result = if cli.status {
        status(&cli)
    } else if cli.for_run {
        for_run(cli)
    } else {
        run(cli)
    };
    run_tool(TOOL, Exit::ToolFailed, result.map_err(Failure::from))
}

fn status(cli: &Cli) -> anyhow::Result<i32> {
    if !cli.command.is_empty() {
        anyhow::bail!("--status takes no command");
    }
    let domains = cli
        .domains
        .iter()
        .map(|d| Domain::parse_os(d))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = LockDir::at(cli.lock_dir.clone());
    if !dir.check_existing()? {
        diag!(
            TOOL,
            "lock dir {} does not exist: no locks (is {} set as the runs use it?)",
            dir.path().display(),
            EnvVars::CCCI_APP_LOCK_DIR
        );
    }
    let report = lockstatus::status(&dir, &domains)?;
    if cli.json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        emit(&report.render_text())?;
    }
    let held = |i: usize| report.locks[i].state == lockstatus::LockState::Held;
    Ok(match domains.len() {
        1 if held(0) => Exit::Failure.code(),
        1 if report.locks[0].state == lockstatus::LockState::Refused => Exit::ToolFailed.code(),
        _ => Exit::Success.code(),
    })
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let domain = one_domain(&cli, "<DOMAIN> -- <COMMAND>...")?;
    if cli.command.is_empty() {
        anyhow::bail!(
            "no command given after `--` (usage: ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND>...)"
        );
    }
    let dir = LockDir::at(cli.lock_dir.clone());
    dir.ensure()?;
    // Nested in a run that holds the domain already: waiting would be waiting for
    // ourselves, forever.
    let held = held_by_this_run(&dir, &domain)
        .with_context(|| format!("cannot tell whether this run already holds {domain}"))?;
    match held {
        Some(RunHold::Own { fd }) => {
            if !cli.quiet {
                say!("== app lock: {domain} is already held by this run (fd {fd}) ==");
            }
            return Ok(exec_holding(
                &cli.command,
                fd,
                &dir.lockfile(&domain),
                &domain,
            ));
        }
        Some(hold) => return Ok(exec_held_above(&cli, &dir, &domain, hold)),
        None => {}
    }
    let command = cli
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Inside a run, what we wait for may turn out to be our own run's (a keeper of it
    // took the domain while we waited): then run the command as if it had been so at once.
    let ours = |hold: RunHold| exec_held_above(&cli, &dir, &domain, hold);
    let recheck = run_top(&dir).map(|_| &ours as &dyn Fn(RunHold) -> i32);
    let (lock, waited) = match take(&cli, &dir, &domain, command, None, recheck)? {
        Ok(taken) => taken,
        Err(not_acquired) => return Ok(not_acquired),
    };
    let file = lock.path().to_owned();
    let fd = lock.into_inherited_fd()?;
    if !cli.quiet {
        say!("== app lock: acquired {domain}{} ==", after(waited));
    }
    Ok(exec_holding(&cli.command, fd, &file, &domain))
}

/// Run the command under `domain`, which this run holds above us or through a keeper:
/// there is no descriptor to pass on, and the tools below ask the kernel as we did. The
/// variables still say which lock the command runs under — not the outer one's domain
/// and descriptor number, which the environment carries into processes without it.
fn exec_held_above(cli: &Cli, dir: &LockDir, domain: &Domain, hold: RunHold) -> i32 {
    if !cli.quiet {
        say!("== app lock: {domain} is already held by this run ({hold}) ==");
    }
    let file = dir.lockfile(domain);
    let env = [
        (EnvVars::CCCI_LOCK_FD, OsStr::new("")),
        (EnvVars::CCCI_LOCK_FILE, file.as_os_str()),
        (EnvVars::CCCI_LOCK_DOMAIN, OsStr::new(domain.as_str())),
    ];
    let err = exec::exec(&cli.command, &env);
    diag!(TOOL, "{err}");
    err.status.code()
}

/// `--for-run DOMAIN`: take a dependency's lock for the rest of the run we are in
/// (`docs/lock.md`, "A run's dependencies"). The starter checks and starts a keeper; the
/// keeper (`--keeper`) takes the lock and holds it until the run's top ends.
fn for_run(cli: Cli) -> anyhow::Result<i32> {
    let domain = one_domain(&cli, "--for-run <DOMAIN>")?;
    if !cli.command.is_empty() {
        anyhow::bail!("--for-run takes no command: the lock is kept until the run ends");
    }
    let dir = LockDir::at(cli.lock_dir.clone());
    dir.ensure()?;
    let not_in_a_run = || {
        anyhow::anyhow!(
            "not inside a run: no process above holds an app lock in {} — take the run's own app first (ccci-lock <app domain> -- <harness>), or set {} as the run does",
            dir.path().display(),
            EnvVars::CCCI_APP_LOCK_DIR
        )
    };
    if !cli.keeper {
        let held = held_by_this_run(&dir, &domain)
            .with_context(|| format!("cannot tell whether this run already holds {domain}"))?;
        if let Some(hold) = held {
            if !cli.quiet {
                say!("== app lock: {domain} is already held by this run ({hold}) ==");
            }
            return Ok(Exit::Success.code());
        }
        run_top(&dir).ok_or_else(not_in_a_run)?;
        // The keeper holds what it takes, nothing of the run's.
        runlocks::keep_locks_from_children();
        let args: Vec<OsString> = std::iter::once("--keeper".into())
            .chain(std::env::args_os().skip(1))
            .collect();
        let program =
            std::env::current_exe().context("cannot find this program to start a keeper")?;
        return Ok(
            match keeper::start(&program, &args).context("cannot start a keeper")? {
                Started::Held { .. } => Exit::Success.code(),
                Started::Ended(status) => status
                    .code()
                    .or_else(|| status.signal().map(signal_status))
                    .unwrap_or(Exit::ToolFailed.code()),
            },
        );
    }
    let top = run_top(&dir).ok_or_else(not_in_a_run)?;
    let pinned =
        keeper::pin(top).with_context(|| format!("cannot pin the run's top, pid {top}"))?;
    // Pinned by pid: if that pid ended and was reused meanwhile, it is not our run's.
    if run_top(&dir) != Some(top) {
        return Err(not_in_a_run());
    }
    let command = vec![TOOL.to_owned(), "--for-run".to_owned(), domain.to_string()];
    // Nothing to keep when a sibling keeper took it meanwhile (two `--for-run D` at once).
    let ours = |hold: RunHold| {
        if !cli.quiet {
            say!("== app lock: {domain} is already held by this run ({hold}) ==");
        }
        Exit::Success.code()
    };
    let (lock, waited) = match take(&cli, &dir, &domain, command, Some(top), Some(&ours))? {
        Ok(taken) => taken,
        Err(not_acquired) => return Ok(not_acquired),
    };
    if !cli.quiet {
        say!(
            "== app lock: acquired {domain}{} for the rest of this run (kept by pid {} until pid {top} ends) ==",
            after(waited),
            std::process::id()
        );
    }
    keeper::keep_until_end(pinned).context("keeping the lock")?;
    drop(lock);
    Ok(Exit::Success.code())
}

fn one_domain(cli: &Cli, usage: &str) -> anyhow::Result<Domain> {
    let [domain] = cli.domains.as_slice() else {
        anyhow::bail!(
            "expected exactly one DOMAIN, got {} (usage: ccci-lock [OPTIONS] {usage})",
            cli.domains.len()
        );
    };
    Ok(Domain::parse_os(domain)?)
}

fn after(waited: Option<Duration>) -> String {
    waited.map_or_else(String::new, |w| {
        format!(" after {}", duration::format_secs(w))
    })
}

/// How often a wait inside a run looks whether the run holds the domain now (see [`take`]).
const RECHECK: Duration = Duration::from_secs(1);

/// Take `domain`'s lock as the options say, reporting the wait; `Err(status)` when it was
/// not acquired (`-n`, `-w`), after saying who holds it.
fn take(
    cli: &Cli,
    dir: &LockDir,
    domain: &Domain,
    command: Vec<String>,
    kept_for: Option<i32>,
    ours: Option<&dyn Fn(RunHold) -> i32>,
) -> anyhow::Result<Result<(AppLock, Option<Duration>), i32>> {
    let run_id = RunId::or_drone_build(cli.run_id.clone())?;
    let wait_env = non_empty(EnvVars::CCCI_LOCK_WAIT)
        .map(|v| {
            duration::parse(&v.to_string_lossy())
                .map_err(|e| anyhow::anyhow!("{}: {e}", EnvVars::CCCI_LOCK_WAIT))
        })
        .transpose()?;
    let wait = match cli.wait.or(wait_env) {
        _ if cli.no_wait => Wait::No,
        Some(d) if d.is_zero() => Wait::No,
        Some(d) => Wait::For(d),
        None => Wait::Forever,
    };
    let quiet = cli.quiet;
    let progress = cli.progress_interval;
    // Waiting inside a run (`ours`), look every RECHECK whether our own run got the domain
    // meanwhile: a keeper of it (two `--for-run D` at once, or `--for-run D` beside
    // `ccci-lock D -- cmd`) took it while we waited, and we would wait for our own run —
    // for ever, as it waits for us. Then `ours` says what to do instead, and we end with
    // its status; the flock still pending in the waiting thread goes with us (at exit, or
    // at exec: the lockfile is close-on-exec). Waiting lines still come every
    // --progress-interval.
    let rechecking = ours.is_some();
    let mut next_line = progress;
    let ours_now = |event: &WaitEvent<'_>| {
        let Some(ours) = ours else { return };
        if !matches!(
            event,
            WaitEvent::Blocked { .. } | WaitEvent::StillWaiting { .. }
        ) {
            return;
        }
        if let Ok(Some(hold)) = held_by_this_run(dir, domain) {
            std::process::exit(ours(hold));
        }
        // A keeper whose run ended while it waited (the harness was killed; its starter
        // lives on, orphaned) has nobody to keep the lock for: it must not take it.
        if let Some(top) = kept_for.filter(|&top| run_top(dir) != Some(top)) {
            diag!(
                TOOL,
                "the run (pid {top}) ended while waiting for {domain} — not taking it"
            );
            std::process::exit(Exit::ToolFailed.code());
        }
    };
    let mut report_wait = |event: WaitEvent<'_>| match event {
        WaitEvent::StillWaiting { waited, .. } | WaitEvent::StillHeldUnlinked { waited, .. }
            if rechecking && waited < next_line => {}
        // An older build's lockfile, lockable by anyone: said even with -q.
        WaitEvent::Retired { path } => diag!(
            TOOL,
            "warning: {} could be opened by other users (made 0644 by an older build): retired, and a fresh 0600 lockfile holds {domain} — whatever held the old one (another user, a run of an older build) is not waited for",
            path.display()
        ),
        WaitEvent::HolderNotWritten { path, error } => diag!(
            TOOL,
            "warning: could not write holder metadata to {}: {error} (the lock is held all the same)",
            path.display()
        ),
        _ if quiet => {}
        WaitEvent::Blocked { holder } => say!(
            "== app lock: another run of {domain} in flight ({}) — waiting ==",
            describe(holder, true)
        ),
        WaitEvent::StillWaiting { waited, holder } => {
            next_line = waited + progress;
            say!(
                "== app lock: still waiting for {domain} after {} ({}) ==",
                duration::format(waited),
                describe(holder, false)
            )
        }
        WaitEvent::Replaced { path, inode } => diag!(
            TOOL,
            "{} was unlinked while we waited on it (inode {inode}) — reopening",
            path.display()
        ),
        WaitEvent::HeldUnlinked { holders } => say!(
            "== app lock: {domain} is also held by {} through a lockfile that was removed by hand — waiting for it to end ==",
            who(holders)
        ),
        WaitEvent::StillHeldUnlinked { waited, holders } => {
            next_line = waited + progress;
            say!(
                "== app lock: still waiting for {domain} after {} (held by {} through a removed lockfile) ==",
                duration::format(waited),
                who(holders)
            )
        }
    };
    let mut report = |event: WaitEvent<'_>| {
        ours_now(&event);
        report_wait(event)
    };
    let mut holder = Holder::new_for_this_process(
        Some(domain.as_str()),
        run_id.as_ref().map(RunId::as_str),
        TOOL,
        command,
    );
    holder.kept_for = kept_for;
    let how = |waited: Duration| match wait {
        Wait::For(_) => format!("gave up after {}", duration::format_secs(waited)),
        _ => "not waiting".to_owned(),
    };
    let progress = if rechecking {
        progress.min(RECHECK)
    } else {
        progress
    };
    let conflict = i32::from(cli.conflict_exit_code);
    let start = std::time::Instant::now();
    let (lock, waited) = match AppLock::acquire(dir, domain, wait, progress, &holder, &mut report)?
    {
        Acquisition::Held { lock, waited } => (lock, waited),
        Acquisition::Busy { holder, waited } => {
            let (pid, run) = pid_and_run(holder.as_ref());
            diag!(
                TOOL,
                "{domain} is held by pid {pid} (run {run}) — {}",
                how(waited)
            );
            return Ok(Err(conflict));
        }
        Acquisition::BusyUnlinked { holders, waited } => {
            diag!(
                TOOL,
                "{domain} is held by {} through a lockfile that was removed by hand — {}",
                who(&holders),
                how(waited)
            );
            return Ok(Err(conflict));
        }
    };
    // Switching from the old layer: its lockfile too, after ours, for the whole run.
    let legacy = hold_legacy(
        dir,
        domain,
        wait,
        start,
        progress,
        (quiet, cli.conflict_exit_code),
    );
    Ok(match legacy {
        Ok(legacy_waited) => Ok((lock, waited.or(legacy_waited.map(|_| start.elapsed())))),
        Err(code) => Err(code),
    })
}

/// While `CCCI_LEGACY_LOCK_DIR` is set, hold the old layer's lockfile of `domain` too,
/// within what is left of `wait`, its descriptor inherited by the command (legacy.rs);
/// `Ok` with whether (how long) it waited for a run of the old layer.
/// `Err` with the status to exit with: the conflict code when not acquired, 125 when it
/// cannot be used.
fn hold_legacy(
    dir: &LockDir,
    domain: &Domain,
    wait: Wait,
    start: std::time::Instant,
    progress: Duration,
    (quiet, conflict_exit_code): (bool, u8),
) -> Result<Option<Duration>, i32> {
    let legacy = LegacyLocks::from_env().beside(dir);
    let left = match wait {
        Wait::For(d) => Wait::For(d.saturating_sub(start.elapsed())),
        other => other,
    };
    let mut report = legacy.say_events(TOOL, domain, quiet);
    match legacy.hold(domain, left, progress, &mut report) {
        Ok(None) => Ok(None),
        Ok(Some(held)) => {
            let waited = held.waited();
            held.into_inherited_fd().map_err(|e| {
                diag!(
                    TOOL,
                    "cannot keep {} for the command: {e}",
                    held_path(domain, &legacy)
                );
                Exit::ToolFailed.code()
            })?;
            Ok(waited)
        }
        Err(e @ LegacyError::Busy { .. }) => {
            diag!(TOOL, "{e}");
            Err(i32::from(conflict_exit_code))
        }
        Err(e) => {
            diag!(TOOL, "{e}");
            Err(Exit::ToolFailed.code())
        }
    }
}

fn held_path(domain: &Domain, legacy: &LegacyLocks) -> String {
    legacy
        .lockfile(domain)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The processes holding a removed lockfile, for a line: `pid 4242 (cc-ci-run), ...`.
fn who(holders: &[OpenBy]) -> String {
    let who: Vec<String> = holders
        .iter()
        .map(|h| {
            format!(
                "pid {} ({})",
                h.pid,
                ccci_core::lock::holder::plain(&h.comm)
            )
        })
        .collect();
    who.join(", ")
}

/// Exec the command with the lock's descriptor and the variables that name it.
fn exec_holding(command: &[OsString], fd: i32, file: &std::path::Path, domain: &Domain) -> i32 {
    let fd = fd.to_string();
    let env = [
        (EnvVars::CCCI_LOCK_FD, OsStr::new(&fd)),
        (EnvVars::CCCI_LOCK_FILE, file.as_os_str()),
        (EnvVars::CCCI_LOCK_DOMAIN, OsStr::new(domain.as_str())),
    ];
    let err = exec::exec(command, &env);
    diag!(TOOL, "{err}");
    err.status.code()
}
