//! ccci-lock's command line, apart from the program so that ccci-gen (tools/gen) builds
//! the man page and the shell completions from this very definition.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ccci_core::cli::duration_arg;
use ccci_core::env::{EnvVars, defaults};
use ccci_core::exit::Exit;
use clap::Parser;

pub(crate) use ccci_core::lock::session::TOOL;

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

DEPENDENCIES OF A RUN:
  A run that deploys a cold dependency as an app of its own takes that app's lock too,
  from inside the run, before deploying it: `ccci-lock --for-run DEP_DOMAIN` waits like
  any ccci-lock (same lines, -n, -w, -E), then returns 0 and leaves a keeper process
  that holds DEP_DOMAIN until the run's top (the harness ccci-lock exec'd) has ended.
  `ccci-deploy up|down DEP_DOMAIN` then passes its lock rule, and the janitor leaves the
  dependency alone while the run lives. A domain the run holds already (its own app, or a
  dependency taken before: D -> E -> D) is not waited for: 0 at once. Outside a run (no
  process above holds an app lock in the lock dir): status 125.

ALREADY HELD BY THIS RUN:
  Whether the run holds a domain is asked of the kernel (/proc), never of variables: a
  descriptor of ours, one of a process above us (a Python harness does not pass
  CCCI_LOCK_FD to what it starts), or a keeper of this run. A nested `ccci-lock D --
  CMD` of a held domain does not wait for itself: it runs CMD at once. A wait inside a
  run looks again every second, and ends when a keeper of this run has taken D meanwhile
  (two threads of a harness asking for D at once).

EXIT STATUS:
  the command's own   the command ran (killed by signal N: the shell shows 128+N)
  75                  not acquired: --no-wait, or --wait ran out (see -E)
  125                 ccci-lock itself failed: usage, invalid domain, unusable lock dir
  126                 the command was found but could not be executed
  127                 the command was not found
  --status: 0; with exactly one DOMAIN, 0 if it is free and 1 if it is held.

ENVIRONMENT:
  CCCI_APP_LOCK_DIR   the lock dir (like --lock-dir)
  CCCI_LOCK_WAIT      like --wait
  CCCI_LEGACY_LOCK_DIR  while switching from the old layer, its lock dir (/run/lock):
                      the run also holds <dir>/cc-ci-app-<DOMAIN>.lock, after its own
                      lock, waiting for a run of the old layer as for any other run
  CCCI_RUN_ID         the run id recorded for the holder (like --run-id)
  DRONE_BUILD_NUMBER  the run id when neither is set
  Set for the command: CCCI_LOCK_FD (the descriptor holding the lock: never unlock it;
  empty when the lock is held above us or kept for the run), CCCI_LOCK_FILE, CCCI_LOCK_DOMAIN.";

/// Run a command while holding an app domain's lock, one run per domain at a time.
#[derive(Parser, Debug)]
#[command(
    name = TOOL,
    version,
    override_usage = "ccci-lock [OPTIONS] <DOMAIN> -- <COMMAND> [ARGS]...\n       ccci-lock [OPTIONS] --for-run <DOMAIN>\n       ccci-lock --status [--json] [DOMAIN]...",
    after_help = AFTER_HELP
)]
pub(crate) struct Cli {
    /// Directory of the app lockfiles
    #[arg(long, value_name = "DIR", env = EnvVars::CCCI_APP_LOCK_DIR, default_value = defaults::APP_LOCK_DIR)]
    pub(crate) lock_dir: PathBuf,

    /// Fail at once (status 75) if another run holds the domain
    #[arg(short = 'n', long)]
    pub(crate) no_wait: bool,

    /// Give up after this long (90s, 25m, 1h30m, 0.5) [env: CCCI_LOCK_WAIT] [default: forever]
    #[arg(short = 'w', long, value_name = "DUR", value_parser = duration_arg)]
    pub(crate) wait: Option<Duration>,

    /// Status to exit with when the lock is not acquired
    #[arg(short = 'E', long, value_name = "N", default_value_t = Exit::Conflict.code() as u8)]
    pub(crate) conflict_exit_code: u8,

    /// Run id recorded in the holder metadata (unset: DRONE_BUILD_NUMBER)
    #[arg(long, value_name = "ID", env = EnvVars::CCCI_RUN_ID)]
    pub(crate) run_id: Option<OsString>,

    /// How often to repeat the waiting line while blocked
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = duration_arg)]
    pub(crate) progress_interval: Duration,

    /// No '==' progress lines (errors still print)
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// List locks instead: domain, held or free, holder pid, run and age
    #[arg(long)]
    pub(crate) status: bool,

    /// With --status: one JSON document on stdout
    #[arg(long, requires = "status")]
    pub(crate) json: bool,

    /// Take DOMAIN (a dependency app) for the rest of this run, then return: wait as
    /// usual, then leave a keeper that holds it until the run's harness ends
    #[arg(long, conflicts_with = "status")]
    pub(crate) for_run: bool,

    /// With --for-run: be the keeper (started by ccci-lock itself)
    #[arg(long, hide = true, requires = "for_run")]
    pub(crate) keeper: bool,

    /// The app domain (with --status: any number of them, or none for all)
    #[arg(value_name = "DOMAIN")]
    pub(crate) domains: Vec<OsString>,

    /// The command to run while holding the lock (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}
