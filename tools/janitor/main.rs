//! ccci-janitor: reap what crashed runs left, never touching a live run or a warm app.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ccci_core::cli::{duration_arg, emit, parse_or_exit};
use ccci_core::docker::Docker;
use ccci_core::env::{EnvVars, canonical_abra_dir, non_empty};
use ccci_core::exit::Exit;
use ccci_core::janitor::Janitor;
use ccci_core::janitor_report::{Report, write_atomically};
use ccci_core::lockdir::LockDir;
use ccci_core::{diag, say, timefmt};
use clap::Parser;
use regex::Regex;

const TOOL: &str = "ccci-janitor";
const RUN_APP_RE: &str = r"^[a-z0-9]{1,4}-[0-9a-f]{6}\.";
const PROTECT_RE: &str = "^warm-";

const AFTER_HELP: &str = "\
WHAT IT DOES:
  Candidates are the domains named by a lockfile in the lock dir, by a swarm stack label
  (services, volumes, networks, secrets, configs) or by a servers/*/<domain>.env in the
  canonical abra tree. Only domains matching --run-app-re and not --protect-re are
  probed; the others are counted as ignored and never touched, nor given a lockfile.
  Each eligible domain's lock is tried without waiting: held means a live run (left; a
  warning with the processes holding it when older than --stale-after); acquired means
  no run holds it: whatever it has on the swarm and its .env are removed while the lock
  is held, then the lockfile is unlinked, still holding. Run with --dry-run first.

EXIT STATUS:
  0   nothing failed
  1   a reap failed (the other domains were still done)
  2   usage error (a bad regex or duration)
  69  docker is unreachable: nothing was touched

ENVIRONMENT:
  CCCI_APP_LOCK_DIR        the lock dir (default /run/lock/cc-ci)
  CCCI_CANONICAL_ABRA_DIR  the host's abra tree (default $HOME/.abra)
  CCCI_RUN_APP_RE          allowlist (default ^[a-z0-9]{1,4}-[0-9a-f]{6}\\.)
  CCCI_PROTECT_RE          denylist, wins over the allowlist (default ^warm-)
  CCCI_DOCKER              the docker executable (default docker)";

/// Reap the apps crashed runs left on the swarm; never touch a live run or a warm app.
#[derive(Parser, Debug)]
#[command(name = TOOL, version, after_help = AFTER_HELP)]
struct Cli {
    /// Probe with shared locks and report what would be done; create and delete nothing
    #[arg(long)]
    dry_run: bool,
    /// One JSON document on stdout
    #[arg(long)]
    json: bool,
    /// Warn about a held lock older than this (a possible leaked run)
    #[arg(long, value_name = "DUR", default_value = "120m", value_parser = duration_arg)]
    stale_after: Duration,
    /// Also write Prometheus textfile metrics here (atomically)
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Directory of the app lockfiles [env: CCCI_APP_LOCK_DIR] [default: /run/lock/cc-ci]
    #[arg(long, value_name = "DIR")]
    lock_dir: Option<PathBuf>,
    /// The canonical abra tree [env: CCCI_CANONICAL_ABRA_DIR] [default: $HOME/.abra]
    #[arg(long, value_name = "DIR")]
    abra_dir: Option<PathBuf>,
    /// Allowlist: domains of ephemeral run apps [env: CCCI_RUN_APP_RE]
    #[arg(long, value_name = "RE")]
    run_app_re: Option<String>,
    /// Denylist, wins over the allowlist [env: CCCI_PROTECT_RE]
    #[arg(long, value_name = "RE")]
    protect_re: Option<String>,
    /// Per reap: how long containers may take to go and volumes to come free
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = duration_arg)]
    timeout: Duration,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit(TOOL, Exit::Usage);
    let status = run(cli).unwrap_or_else(|(exit, msg)| {
        diag!(TOOL, "{msg}");
        exit
    });
    ExitCode::from(status.code() as u8)
}

fn setting(option: Option<String>, var: &str, default: &str) -> String {
    option
        .or_else(|| non_empty(var).map(|v| v.to_string_lossy().into_owned()))
        .unwrap_or_else(|| default.to_owned())
}

fn run(cli: Cli) -> Result<Exit, (Exit, String)> {
    let regex = |option, var: &str, default| {
        let re = setting(option, var, default);
        Regex::new(&re).map_err(|e| (Exit::Usage, format!("invalid regex {re:?} ({var}): {e}")))
    };
    let run_app_re = regex(cli.run_app_re, EnvVars::CCCI_RUN_APP_RE, RUN_APP_RE)?;
    let protect_re = regex(cli.protect_re, EnvVars::CCCI_PROTECT_RE, PROTECT_RE)?;
    let lock_dir = LockDir::resolve(cli.lock_dir);
    let abra_dir = canonical_abra_dir(cli.abra_dir).map_err(|e| (Exit::Usage, e))?;
    // Docker first: a janitor that cannot see the swarm touches nothing, not even the
    // lock dir.
    let docker = Docker::from_env();
    docker.ping().map_err(|e| {
        (
            if e.is_unavailable() {
                Exit::Unavailable
            } else {
                Exit::Failure
            },
            e.to_string(),
        )
    })?;
    // A dry run creates nothing, not even the lock dir (after a reboot it is missing).
    let lock_dir_ok = if cli.dry_run {
        lock_dir.check_existing().map(drop)
    } else {
        lock_dir.ensure()
    };
    lock_dir_ok.map_err(|e| (Exit::Failure, e.to_string()))?;

    let janitor = Janitor {
        docker: &docker,
        lock_dir,
        abra_dir,
        run_app_re,
        protect_re,
        stale_after: cli.stale_after,
        dry_run: cli.dry_run,
        timeout: cli.timeout,
    };
    let started_at = timefmt::now_millis();
    let start = Instant::now();
    let pass = janitor
        .pass(&mut |d| say!("{TOOL}: {}", d.line()))
        .map_err(|e| {
            (
                if e.is_unavailable() {
                    Exit::Unavailable
                } else {
                    Exit::Failure
                },
                e.to_string(),
            )
        })?;
    let report = Report {
        started_at,
        duration: start.elapsed(),
        domains: &pass.domains,
        ignored: pass.ignored,
    };
    say!("{}", report.summary());
    if cli.json {
        emit(&format!("{}\n", report.json()))
            .map_err(|e| (Exit::Failure, format!("cannot write the report: {e}")))?;
    }
    if let Some(path) = &cli.metrics_file {
        write_atomically(path, &report.metrics()).map_err(|e| {
            (
                Exit::Failure,
                format!("cannot write metrics to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(if report.failed() {
        Exit::Failure
    } else {
        Exit::Success
    })
}
