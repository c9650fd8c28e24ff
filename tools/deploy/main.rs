//! ccci-deploy: deploy and tear down one app on the swarm, only under its app lock; wait
//! for convergence; count deploys.

mod cli;

use std::process::ExitCode;

use ccci_core::cli::{emit, parse_or_exit, run_tool};
use ccci_core::deploy::count;
use ccci_core::deploy::down::{Down, down};
use ccci_core::deploy::status::AppStatus;
use ccci_core::deploy::up::Up;
use ccci_core::domain::Domain;
use ccci_core::exit::{Exit, Failure, OrExit};
use ccci_core::{diag, duration, say};
use cli::{Cli, Cmd, TOOL};

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit(TOOL, Exit::Usage);
    let result = match cli.command {
        Cmd::Up {
            domain,
            recipe,
            server,
            version,
            // The default: the checked-out tree is deployed unless --version pins one.
            chaos: _,
            sets,
            abra_args,
            timeout,
            stable_for,
        } => domain_arg(&domain).and_then(|d| {
            let up = Up {
                domain: &d,
                recipe: &recipe,
                server: &server,
                sets: &sets,
                version: version.as_deref(),
                abra_args: &abra_args,
                timeout,
                stable_for,
            };
            // A stack that did not converge was described on the way.
            Ok(if up.run()? {
                Exit::Success
            } else {
                Exit::Failure
            })
        }),
        Cmd::Down {
            domain,
            timeout,
            no_verify,
            ..
        } => domain_arg(&domain).and_then(|d| match down(&d, timeout, !no_verify)? {
            Down::Removed { removed, took } => {
                say!(
                    "== teardown: {d} — removed {} in {} ==",
                    removed.describe(),
                    duration::format(took)
                );
                Ok(Exit::Success)
            }
            Down::Left(left) => {
                diag!(TOOL, "teardown of {d} left: {left}");
                Ok(Exit::Failure)
            }
        }),
        Cmd::Status { domain, json } => domain_arg(&domain).and_then(|d| {
            let status = AppStatus::collect(&d)?;
            emit(&if json { status.json() } else { status.text() })?;
            Ok(Exit::Success)
        }),
        Cmd::Count { domain, expect } => domain
            .as_deref()
            .map(domain_arg)
            .transpose()
            .and_then(|d| count_deploys(d.as_ref(), expect)),
    };
    ExitCode::from(run_tool(TOOL, Exit::Failure, result.map(Exit::code)) as u8)
}

fn domain_arg(s: &str) -> Result<Domain, Failure> {
    Domain::parse(s).or_exit(Exit::Usage)
}

/// Print the run's deploy count; with `--expect`, a different count is a DG4.1 violation.
fn count_deploys(domain: Option<&Domain>, expect: Option<usize>) -> Result<Exit, Failure> {
    let n = count::deploys_in_run(domain)?;
    emit(&format!("{n}\n"))?;
    match expect {
        Some(want) if want != n => {
            say!("!! deploy-count {n} != {want} (DG4.1 violation)");
            Ok(Exit::Failure)
        }
        _ => Ok(Exit::Success),
    }
}
