//! ccci-guard: supervise one command — its own session, a deadline with grace, signal
//! forwarding, parent-death signals both ways, a subreaper — and leave nothing behind.
#![no_main]

mod cli;

use ccci_core::cli::parse_or_exit;
use ccci_core::exit::Exit;
use ccci_core::guard::TOOL;
use ccci_core::guard::report::Report;
use ccci_core::guard::supervise::{Plan, say, supervise};
use ccci_core::{duration, wrapper_main};
use cli::Cli;

wrapper_main!(guard_main);

fn guard_main() -> i32 {
    let cli: Cli = parse_or_exit(TOOL, Exit::ToolFailed);
    let plan = Plan {
        command: cli.command.clone(),
        deadline: (!cli.deadline.is_zero()).then_some(cli.deadline),
        grace: cli.grace,
        deadline_signal: cli.signal,
        parent_death: !cli.no_parent_death,
        quiet: cli.quiet,
    };
    let ending = match supervise(&plan) {
        Ok(ending) => ending,
        Err(err) => {
            say(format_args!("{TOOL}: {err}"));
            return err.status().code();
        }
    };
    let status = ending.exit_status(cli.preserve_status);
    if !cli.quiet {
        let mut line = format!(
            "{TOOL}: '{}' exited with status {} after {}",
            cli.command[0].to_string_lossy(),
            ending.command_status(),
            duration::format(ending.ran_for)
        );
        if !ending.leftovers.is_empty() {
            let n = ending.leftovers.len();
            line.push_str(&format!(
                "; ended {n} leftover process{}: {}",
                if n == 1 { "" } else { "es" },
                ccci_core::child::sweep::describe(&ending.leftovers)
            ));
        }
        say(format_args!("{line}"));
    }
    if let Some(path) = cli.report.filter(|p| !p.as_os_str().is_empty()) {
        let report = Report::new(&cli.command, &ending, status, plan.deadline, plan.grace);
        if let Err(e) = report.write_to(&path) {
            // The command's status is what the pipeline acts on; a lost report is not
            // worth turning a green build red.
            say(format_args!(
                "{TOOL}: warning: could not write the report to {}: {e}",
                path.display()
            ));
        }
    }
    status
}
