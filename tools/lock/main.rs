//! ccci-lock: one run per app domain — take the domain's flock, show who we wait for,
//! verify the inode, then exec the command with the lock inherited.
#![no_main]

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use ccci_core::applock::{Acquisition, AppLock, Wait, WaitEvent};
use ccci_core::cli::{duration_arg, emit, parse_or_exit};
use ccci_core::domain::Domain;
use ccci_core::env::{EnvVars, non_empty};
use ccci_core::exit::Exit;
use ccci_core::holder::{Holder, describe, pid_and_run};
use ccci_core::lockdir::LockDir;
use ccci_core::runid::RunId;
use ccci_core::{diag, duration, exec, lockstatus, say, wrapper_main};
use clap::Parser;

const TOOL: &str = "ccci-lock";

const AFTER_HELP: &str = "\
THE LOCK DIR:
  Lockfiles are <lock dir>/cc-ci-app-<DOMAIN>.lock. Every process on the host must use
  the same lock dir (set CCCI_APP_LOCK_DIR host-wide): there is no fallback to another
  directory, and a lock dir that cannot be created, is world-writable without the sticky
  bit, or is owned by someone other than root or you is refused (status 125).

WAITING:
  When another run holds the domain, ccci-lock prints
    == app lock: another run of D in flight (pid P, run R, held 3m12s) — waiting ==
  naming the holder from the metadata it wrote into the lockfile, then blocks until the
  holder (the command and everything that inherited the lock) has exited, printing
  '== app lock: still waiting for D after 5m (pid P, run R) ==' every --progress-interval.
  On acquiring it prints '== app lock: acquired D ==' ('after Ns' when it waited) and
  execs the command with CCCI_LOCK_FD, CCCI_LOCK_FILE and CCCI_LOCK_DOMAIN set.

EXIT STATUS:
  the command's own   the command ran (killed by signal N: the shell shows 128+N)
  75                  not acquired: --no-wait, or --wait ran out (see -E)
  125                 ccci-lock itself failed: usage, invalid domain, unusable lock dir
  126                 the command was found but could not be executed
  127                 the command was not found
  --status: 0; with exactly one DOMAIN, 0 if it is free and 1 if it is held.

ENVIRONMENT:
  CCCI_APP_LOCK_DIR   the lock dir (default /run/lock/cc-ci)
  CCCI_LOCK_WAIT      like --wait
  CCCI_RUN_ID         the run id recorded for the holder, else DRONE_BUILD_NUMBER
  Set for the command: CCCI_LOCK_FD (the descriptor holding the lock: never unlock it),
  CCCI_LOCK_FILE, CCCI_LOCK_DOMAIN.";

/// Run a command while holding an app domain's lock, one run per domain at a time.
#[derive(Parser, Debug)]
#[command(
    name = TOOL,
    version,
    override_usage = "ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND> [ARGS]...\n       ccci-lock --status [--json] [DOMAIN]...",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Directory of the app lockfiles [env: CCCI_APP_LOCK_DIR] [default: /run/lock/cc-ci]
    #[arg(long, value_name = "DIR")]
    lock_dir: Option<PathBuf>,

    /// Fail at once (status 75) if another run holds the domain
    #[arg(short = 'n', long)]
    no_wait: bool,

    /// Give up after this long (90s, 25m, 1h30m, 0.5) [env: CCCI_LOCK_WAIT] [default: forever]
    #[arg(short = 'w', long, value_name = "DUR", value_parser = duration_arg)]
    wait: Option<Duration>,

    /// Status to exit with when the lock is not acquired
    #[arg(short = 'E', long, value_name = "N", default_value_t = Exit::Conflict.code() as u8)]
    conflict_exit_code: u8,

    /// Run id recorded in the holder metadata [env: CCCI_RUN_ID, then DRONE_BUILD_NUMBER]
    #[arg(long, value_name = "ID")]
    run_id: Option<OsString>,

    /// How often to repeat the waiting line while blocked
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = duration_arg)]
    progress_interval: Duration,

    /// No '==' progress lines (errors still print)
    #[arg(short, long)]
    quiet: bool,

    /// List locks instead: domain, held or free, holder pid, run and age
    #[arg(long)]
    status: bool,

    /// With --status: one JSON document on stdout
    #[arg(long, requires = "status")]
    json: bool,

    /// The app domain (with --status: any number of them, or none for all)
    #[arg(value_name = "DOMAIN")]
    domains: Vec<OsString>,

    /// The command to run while holding the lock (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

wrapper_main!(lock_main);

fn lock_main() -> i32 {
    let cli: Cli = parse_or_exit(TOOL, Exit::ToolFailed);
    let result = if cli.status { status(&cli) } else { run(cli) };
    result.unwrap_or_else(|err| {
        diag!(TOOL, "{err}");
        Exit::ToolFailed.code()
    })
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
    let dir = LockDir::resolve(cli.lock_dir.clone());
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
    let [domain] = cli.domains.as_slice() else {
        anyhow::bail!(
            "expected exactly one DOMAIN before `--`, got {} (usage: ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND>...)",
            cli.domains.len()
        );
    };
    if cli.command.is_empty() {
        anyhow::bail!(
            "no command given after `--` (usage: ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND>...)"
        );
    }
    let domain = Domain::parse_os(domain)?;
    let run_id = cli
        .run_id
        .or_else(|| non_empty(EnvVars::CCCI_RUN_ID))
        .or_else(|| non_empty(EnvVars::DRONE_BUILD_NUMBER))
        .map(|id| RunId::parse_os(&id))
        .transpose()?;
    let dir = LockDir::resolve(cli.lock_dir);
    dir.ensure()?;
    // Nested under a ccci-lock of the same domain: we hold it already, through the
    // descriptor we inherited. Waiting would be waiting for ourselves, forever.
    if let Some(fd) = ccci_core::applock::inherited(&dir, &domain) {
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
    let mut report = |event: WaitEvent<'_>| match event {
        _ if quiet => {}
        WaitEvent::Blocked { holder } => say!(
            "== app lock: another run of {domain} in flight ({}) — waiting ==",
            describe(holder, true)
        ),
        WaitEvent::StillWaiting { waited, holder } => say!(
            "== app lock: still waiting for {domain} after {} ({}) ==",
            duration::format(waited),
            describe(holder, false)
        ),
        WaitEvent::Replaced { path, inode } => diag!(
            TOOL,
            "{} was unlinked while we waited on it (inode {inode}) — reopening",
            path.display()
        ),
    };
    let (lock, waited) =
        match AppLock::acquire(&dir, &domain, wait, cli.progress_interval, &mut report)? {
            Acquisition::Held { lock, waited } => (lock, waited),
            Acquisition::Busy { holder, waited } => {
                let how = match wait {
                    Wait::For(_) => format!("gave up after {}", duration::format_secs(waited)),
                    _ => "not waiting".to_owned(),
                };
                let (pid, run) = pid_and_run(holder.as_ref());
                diag!(TOOL, "{domain} is held by pid {pid} (run {run}) — {how}");
                return Ok(i32::from(cli.conflict_exit_code));
            }
        };

    let command: Vec<String> = cli
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let holder = Holder::new_for_this_process(
        Some(domain.as_str()),
        run_id.as_ref().map(RunId::as_str),
        TOOL,
        command,
    );
    if let Err(e) = lock.write_holder(&holder) {
        diag!(
            TOOL,
            "warning: could not write holder metadata to {}: {e} (the lock is held all the same)",
            lock.path().display()
        );
    }
    let file = lock.path().to_owned();
    let fd = lock.into_inherited_fd()?;
    if !quiet {
        match waited {
            Some(w) => say!(
                "== app lock: acquired {domain} after {} ==",
                duration::format_secs(w)
            ),
            None => say!("== app lock: acquired {domain} =="),
        }
    }
    Ok(exec_holding(&cli.command, fd, &file, &domain))
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
