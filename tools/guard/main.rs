//! ccci-guard: supervise one command — its own session, a deadline with grace, signal
//! forwarding, parent-death signals both ways, a subreaper — and leave nothing behind.
#![no_main]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ccci_core::child::parse_signal;
use ccci_core::cli::{duration_arg, parse_or_exit};
use ccci_core::env::EnvVars;
use ccci_core::exit::Exit;
use ccci_core::guard_report::Report;
use ccci_core::supervise::{Plan, TOOL, say, supervise};
use ccci_core::{duration, wrapper_main};
use clap::Parser;
use nix::sys::signal::Signal;

const AFTER_HELP: &str = "\
WHAT IT DOES:
  Runs COMMAND in a session of its own (its pgid is its pid) and makes itself a child
  subreaper. TERM, INT, HUP or QUIT to the guard is forwarded to the command's process
  group once and starts the grace clock; later ones are logged, not forwarded. USR1,
  USR2, WINCH and CONT are forwarded as they come. At the deadline the group gets
  --signal (then CONT); when the grace period runs out, everything left gets KILL.
  When the command has exited, every remaining descendant (setsid'd ones included) gets
  TERM, then KILL after the grace period; the guard exits when nothing is left.
  If the guard's parent dies (a Drone cancel SIGKILLs the step's shell), the guard gets
  TERM and ends the command as above; if the guard itself is SIGKILLed, the command
  gets TERM from its own parent-death signal.

EXIT STATUS:
  125                 the guard failed before the command started (usage included)
  126                 the command was found but could not be executed
  127                 the command was not found
  137                 the grace period ran out and the command had to be SIGKILLed
  124                 the deadline fired (with --preserve-status: the command's status)
  128+N               the command was killed by signal N
  the command's own   the command exited with it
  Leftover processes and signals that find nobody (ESRCH) never change the status.

ENVIRONMENT:
  CCCI_DEADLINE       like --deadline (default 60m; 0 = none)
  CCCI_GRACE          like --grace (default 5m)
  CCCI_GUARD_REPORT   like --report";

/// Supervise one command: bound its lifetime and leave nothing behind.
#[derive(Parser, Debug)]
#[command(
    name = TOOL,
    version,
    override_usage = "ccci-guard [OPTIONS] -- <COMMAND> [ARGS]...",
    after_help = AFTER_HELP
)]
struct Cli {
    /// After this long, send --signal to the command's process group; 0 = no deadline
    #[arg(short, long, value_name = "DUR", env = EnvVars::CCCI_DEADLINE, default_value = "60m", value_parser = duration_arg)]
    deadline: Duration,

    /// After the first termination request, wait this long, then SIGKILL what is left
    #[arg(short = 'k', long, value_name = "DUR", env = EnvVars::CCCI_GRACE, default_value = "5m", value_parser = duration_arg)]
    grace: Duration,

    /// Signal sent at the deadline (TERM, SIGTERM or 15)
    #[arg(short, long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal)]
    signal: Signal,

    /// On deadline, exit with the command's status instead of 124
    #[arg(long)]
    preserve_status: bool,

    /// Do not arm the guard's own parent-death signal
    #[arg(long)]
    no_parent_death: bool,

    /// Write the JSON exit report there (atomically)
    #[arg(long, value_name = "FILE", env = EnvVars::CCCI_GUARD_REPORT)]
    report: Option<PathBuf>,

    /// No start and finish lines (warnings and errors still print)
    #[arg(short, long)]
    quiet: bool,

    /// The command to supervise (after `--`)
    #[arg(last = true, value_name = "COMMAND", required = true)]
    command: Vec<OsString>,
}

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
