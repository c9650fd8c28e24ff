//! ccci-janitor's command line, apart from the program so that ccci-gen (tools/gen) builds
//! the man page and the shell completions from this very definition.

use std::path::PathBuf;
use std::time::Duration;

use ccci_core::cli::duration_arg;
use ccci_core::env::{EnvVars, defaults};
use clap::Parser;

pub(crate) const TOOL: &str = "ccci-janitor";

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
  1   a reap failed, or a docker call hung and was killed (the other domains were
      still done; a failed one keeps its lockfile for the next pass)
  2   usage error (a bad regex or duration)
  69  docker is unreachable: nothing was touched

ENVIRONMENT:
  CCCI_APP_LOCK_DIR        the lock dir (like --lock-dir)
  CCCI_LEGACY_LOCK_DIR     while switching from the old layer, its lock dir (/run/lock):
                           a domain whose old lockfile there is held is a live run too
                           (left); a reap holds both locks and unlinks both lockfiles
  CCCI_CANONICAL_ABRA_DIR  the host's abra tree (like --abra-dir)
  CCCI_RUN_APP_RE          like --run-app-re
  CCCI_PROTECT_RE          like --protect-re
  CCCI_DOCKER              the docker executable (default docker)";

/// Reap the apps crashed runs left on the swarm; never touch a live run or a warm app.
#[derive(Parser, Debug)]
#[command(name = TOOL, version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Probe with shared locks and report what would be done; create and delete nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// One JSON document on stdout
    #[arg(long)]
    pub(crate) json: bool,
    /// Warn about a held lock older than this (a possible leaked run)
    #[arg(long, value_name = "DUR", default_value = "120m", value_parser = duration_arg)]
    pub(crate) stale_after: Duration,
    /// Also write Prometheus textfile metrics here (atomically)
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_file: Option<PathBuf>,
    /// Directory of the app lockfiles
    #[arg(long, value_name = "DIR", env = EnvVars::CCCI_APP_LOCK_DIR, default_value = defaults::APP_LOCK_DIR)]
    pub(crate) lock_dir: PathBuf,
    /// The canonical abra tree (unset: $HOME/.abra)
    #[arg(long, value_name = "DIR", env = EnvVars::CCCI_CANONICAL_ABRA_DIR)]
    pub(crate) abra_dir: Option<PathBuf>,
    /// Allowlist: domains of ephemeral run apps
    #[arg(long, value_name = "RE", env = EnvVars::CCCI_RUN_APP_RE, default_value = defaults::RUN_APP_RE)]
    pub(crate) run_app_re: String,
    /// Denylist, wins over the allowlist
    #[arg(long, value_name = "RE", env = EnvVars::CCCI_PROTECT_RE, default_value = defaults::PROTECT_RE)]
    pub(crate) protect_re: String,
    /// Per reap: how long it may take, its docker calls included (a hung one is killed);
    /// also bounds each discovery call (at most 1m)
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = duration_arg)]
    pub(crate) timeout: Duration,
}
