//! ccci-lock: one run per app domain — take the domain's flock, show who we wait for,
//! verify the inode, then exec the command with the lock inherited.
#![no_main]

mod cli;

use std::ffi::OsString;

use ccci_core::cli::{emit, parse_or_exit, run_tool};
use ccci_core::domain::Domain;
use ccci_core::env::EnvVars;
use ccci_core::exit::{Exit, Failure};
use ccci_core::lock::for_run;
use ccci_core::lock::lockdir::LockDir;
use ccci_core::lock::lockstatus::{self, LockState};
use ccci_core::lock::session::{Session, run_command};
use ccci_core::{diag, wrapper_main};
use cli::{Cli, TOOL};

wrapper_main!(lock_main);

fn lock_main() -> i32 {
    let cli: Cli = parse_or_exit(TOOL, Exit::ToolFailed);
    let result = if cli.status {
        status(&cli)
    } else if cli.for_run {
        for_run(&cli)
    } else {
        run(&cli)
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
    Ok(
        match (domains.len(), report.locks.first().map(|l| l.state)) {
            (1, Some(LockState::Held)) => Exit::Failure.code(),
            (1, Some(LockState::Refused)) => Exit::ToolFailed.code(),
            _ => Exit::Success.code(),
        },
    )
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    let domain = one_domain(cli, "<DOMAIN> -- <COMMAND>...")?;
    if cli.command.is_empty() {
        anyhow::bail!(
            "no command given after `--` (usage: ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND>...)"
        );
    }
    run_command(&session(cli), &domain, &cli.command)
}

fn for_run(cli: &Cli) -> anyhow::Result<i32> {
    let domain = one_domain(cli, "--for-run <DOMAIN>")?;
    if !cli.command.is_empty() {
        anyhow::bail!("--for-run takes no command: the lock is kept until the run ends");
    }
    if cli.keeper {
        return for_run::keep(&session(cli), &domain);
    }
    // The keeper is this very program, with the same arguments, as `--keeper`.
    let keeper_args: Vec<OsString> = std::iter::once("--keeper".into())
        .chain(std::env::args_os().skip(1))
        .collect();
    for_run::start_keeper(&session(cli), &domain, &keeper_args)
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

fn session(cli: &Cli) -> Session {
    Session {
        dir: LockDir::at(cli.lock_dir.clone()),
        no_wait: cli.no_wait,
        wait: cli.wait,
        run_id: cli.run_id.clone(),
        progress: cli.progress_interval,
        quiet: cli.quiet,
        conflict_exit_code: cli.conflict_exit_code,
    }
}
