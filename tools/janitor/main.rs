//! ccci-janitor: reap what crashed runs left, never touching a live run or a warm app.

mod cli;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ccci_core::child::bounded::{self, Bound};
use ccci_core::cli::{emit, parse_or_exit, regex_arg, run_tool};
use ccci_core::env::{EnvVars, canonical_abra_dir};
use ccci_core::exit::{Exit, Failure, OrExit};
use ccci_core::janitor::Janitor;
use ccci_core::janitor::report::{Report, write_atomically};
use ccci_core::lock::legacy::LegacyLocks;
use ccci_core::lock::lockdir::LockDir;
use ccci_core::swarm::docker::Docker;
use ccci_core::{say, timefmt};
use cli::{Cli, TOOL};

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit(TOOL, Exit::Usage);
    ExitCode::from(run_tool(TOOL, Exit::Failure, run(cli).map(Exit::code)) as u8)
}

fn run(cli: Cli) -> Result<Exit, Failure> {
    // clap took each from its option, its variable or the default (cli.rs); a bad one is
    // named with both places it may have come from.
    let regex = |re: &str, option: &str, var: &str| regex_arg(re, option, var).or_exit(Exit::Usage);
    let run_app_re = regex(&cli.run_app_re, "--run-app-re", EnvVars::CCCI_RUN_APP_RE)?;
    let protect_re = regex(&cli.protect_re, "--protect-re", EnvVars::CCCI_PROTECT_RE)?;
    let lock_dir = LockDir::at(cli.lock_dir);
    let abra_dir = canonical_abra_dir(cli.abra_dir)
        .map_err(anyhow::Error::msg)
        .or_exit(Exit::Usage)?;
    // Docker first: a janitor that cannot see the swarm touches nothing, not even the
    // lock dir. Outside any reap, each call gets the default bound, or --timeout when
    // that is shorter; each reap bounds its own by --timeout.
    let docker = Docker::from_env().bounded(Bound::Each(cli.timeout.min(bounded::DEFAULT)));
    docker.ping()?;
    // A dry run creates nothing, not even the lock dir (after a reboot it is missing).
    let lock_dir_ok = if cli.dry_run {
        lock_dir.check_existing().map(drop)
    } else {
        lock_dir.ensure()
    };
    lock_dir_ok.or_exit(Exit::Failure)?;

    let legacy = LegacyLocks::from_env().beside(&lock_dir);
    let janitor = Janitor {
        docker: &docker,
        lock_dir,
        abra_dir,
        run_app_re,
        legacy,
        protect_re,
        stale_after: cli.stale_after,
        dry_run: cli.dry_run,
        timeout: cli.timeout,
    };
    let started_at = timefmt::now_millis();
    let start = Instant::now();
    let pass = janitor.pass(&mut |d| say!("{TOOL}: {}", d.line()))?;
    let report = Report {
        started_at,
        duration: start.elapsed(),
        domains: &pass.domains,
        ignored: pass.ignored,
        untraced: pass.untraced,
    };
    say!("{}", report.summary());
    if cli.json {
        emit(&format!("{}\n", report.json()))
            .context("cannot write the report")
            .or_exit(Exit::Failure)?;
    }
    if let Some(path) = &cli.metrics_file {
        write_atomically(path, &report.metrics())
            .with_context(|| format!("cannot write metrics to {}", path.display()))
            .or_exit(Exit::Failure)?;
    }
    Ok(if report.failed() {
        Exit::Failure
    } else {
        Exit::Success
    })
}
