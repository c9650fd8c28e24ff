//! ccci-guard's command line, apart from the program so that ccci-gen (tools/gen) builds
//! the man page and the shell completions from this very definition.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ccci_core::child::{Signo, parse_signal};
use ccci_core::cli::duration_arg;
use ccci_core::env::EnvVars;
use ccci_core::guard::TOOL;
use clap::Parser;

const AFTER_HELP: &str = "\
WHAT IT DOES:
  Runs COMMAND in a session of its own (its pgid is its pid) and makes itself a child
  subreaper. TERM, INT, HUP or QUIT to the guard is forwarded to the command's process
  group once and starts the grace clock; later ones are logged, not forwarded. USR1,
  USR2, WINCH and CONT are forwarded as they come (once the command has exited, to its
  leftovers, through pidfds). At the deadline the group gets --signal (then CONT); when
  the grace period runs out, everything left gets KILL.
  When the command has exited, every remaining descendant (setsid'd ones included) gets
  TERM, then KILL after the grace period; the guard exits when nothing is left.
  If the guard's parent dies (a Drone cancel SIGKILLs the step's shell), the guard ends
  the command as if it had got TERM; the end of a launcher's thread that started the
  guard, while the launcher lives on, is not a death. If the guard itself is SIGKILLed,
  the command gets TERM from its own parent-death signal.

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
pub(crate) struct Cli {
    /// After this long, send --signal to the command's process group; 0 = no deadline
    #[arg(short, long, value_name = "DUR", env = EnvVars::CCCI_DEADLINE, default_value = "60m", value_parser = duration_arg)]
    pub(crate) deadline: Duration,

    /// After the first termination request, wait this long, then SIGKILL what is left
    #[arg(short = 'k', long, value_name = "DUR", env = EnvVars::CCCI_GRACE, default_value = "5m", value_parser = duration_arg)]
    pub(crate) grace: Duration,

    /// Signal sent at the deadline (TERM, SIGTERM, 15, RTMIN+2)
    #[arg(short, long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal)]
    pub(crate) signal: Signo,

    /// On deadline, exit with the command's status instead of 124
    #[arg(long)]
    pub(crate) preserve_status: bool,

    /// Do not arm the guard's own parent-death signal
    #[arg(long)]
    pub(crate) no_parent_death: bool,

    /// Write the JSON exit report there (atomically)
    #[arg(long, value_name = "FILE", env = EnvVars::CCCI_GUARD_REPORT)]
    pub(crate) report: Option<PathBuf>,

    /// No start and finish lines (warnings and errors still print)
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// The command to supervise (after `--`)
    #[arg(last = true, value_name = "COMMAND", required = true)]
    pub(crate) command: Vec<OsString>,
}
