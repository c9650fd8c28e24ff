//! ccci-rundir's command line, apart from the program so that ccci-gen (tools/gen) builds
//! the man page and the shell completions from this very definition.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ccci_core::cli::duration_arg;
use ccci_core::env::{EnvVars, defaults};
use clap::{Args, Parser, Subcommand};

pub(crate) const TOOL: &str = "ccci-rundir";

const AFTER_HELP: &str = "\
LAYOUT:
  <runs dir>/<run id>/.run.lock        held (flock) for as long as the command lives
  <runs dir>/<run id>/abra/servers     -> <abra dir>/servers    (shared app configs)
  <runs dir>/<run id>/abra/catalogue   -> <abra dir>/catalogue
  <runs dir>/<run id>/abra/recipes/    fresh and empty for every attempt
  <runs dir>/<run id>/state/           fresh and empty for every attempt
  What a crashed attempt of the same run id left is repaired; a real file or directory
  where a symlink belongs is refused, never deleted. The command gets ABRA_DIR,
  CCCI_RUN_ID, CCCI_RUN_DIR, CCCI_STATE_DIR, CCCI_DEPLOY_COUNT_FILE, CCCI_OP_STATE_FILE,
  CCCI_DEPS_FILE and CCCI_DEPSKIP_FILE. gc removes what is laid out here from idle runs
  and keeps what the command wrote into the run dir (results.json, screenshots, ...)
  unless --results-older-than says so: see ccci-rundir gc --help.

EXIT STATUS:
  the command's own   the command ran (killed by signal N: the shell shows 128+N)
  125                 ccci-rundir itself failed: usage (gc included), invalid run id,
                      run id already in progress, unusable runs dir, no <abra dir>/servers
  126                 the command was found but could not be executed
  127                 the command was not found
  gc: 0 done, 1 a removal failed, 125 usage.

ENVIRONMENT:
  CCCI_RUN_ID              the run id (like --run-id)
  DRONE_BUILD_NUMBER       the run id when neither is set
  CCCI_RUNS_DIR            the runs dir (like --runs-dir)
  CCCI_CANONICAL_ABRA_DIR  the host's abra tree (like --abra-dir)";

/// Run a command in its own run directory: a private abra tree and state files.
#[derive(Parser, Debug)]
#[command(
    name = TOOL,
    version,
    override_usage = "ccci-rundir [OPTIONS] -- <COMMAND> [ARGS]...\n       ccci-rundir --print [--json] [OPTIONS]\n       ccci-rundir gc --older-than <DUR> [--results-older-than <DUR>] [--dry-run] [--json]\n       ccci-rundir domain [--recipe R] [--pr P] [--ref REF]",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// This run's id (unset: DRONE_BUILD_NUMBER, else manual-<unix-seconds>-<pid>)
    #[arg(long, value_name = "ID", env = EnvVars::CCCI_RUN_ID)]
    pub(crate) run_id: Option<OsString>,

    #[command(flatten)]
    pub(crate) runs: RunsDirArg,

    /// The host's shared abra tree (unset: $HOME/.abra)
    #[arg(long, value_name = "DIR", env = EnvVars::CCCI_CANONICAL_ABRA_DIR)]
    pub(crate) abra_dir: Option<PathBuf>,

    /// Lay out the run dir and print its variables (KEY='VALUE' lines) instead of running a command
    #[arg(long)]
    pub(crate) print: bool,

    /// With --print: one JSON object
    #[arg(long, requires = "print")]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) sub: Option<Sub>,

    /// The command to run in the run dir (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub(crate) struct RunsDirArg {
    /// Parent of the per-run directories
    #[arg(long, value_name = "DIR", env = EnvVars::CCCI_RUNS_DIR, default_value = defaults::RUNS_DIR)]
    pub(crate) runs_dir: PathBuf,
}

const GC_AFTER_HELP: &str = "\
WHAT GC REMOVES AND KEEPS:
  A run is judged only when its .run.lock is free (a held run is never touched, however
  old), by its idle time: the newest mtime of the run dir and its state/.
  idle >= --older-than          what ccci-rundir laid out goes: abra/ (the run's abra tree;
                                symlinks unlinked, never followed), state/ and, if nothing
                                else is left, .run.lock and the run dir itself.
                                Everything else in the run dir -- what the run's command
                                wrote there: results.json, lint output, screenshots,
                                artifacts/ -- is kept, and its age keeps counting from the
                                run's last change.
  idle >= --results-older-than  the whole run dir goes, what the command wrote included
                                (whatever --older-than says). Off unless given.
  Only directories named like a run id that hold a .run.lock of ours are runs: nothing
  else in the runs dir is touched, and nothing mounted inside a run is removed.

OUTPUT:
  removed run <id> (<path>, idle <DUR>)    the run dir is gone
  pruned run <id> (<path>, idle <DUR>): kept <names>
  (would remove / would prune with --dry-run)
  --json: {\"version\":1,\"removed\":[...],\"pruned\":[...],\"kept\":[...],\"failed\":[...]}";

const DOMAIN_AFTER_HELP: &str = "\
THE DOMAIN:
  <first 4 letters or digits of the recipe>-<6 hex>.<suffix>, e.g.
  immi-ad3e33.ci.commoninternet.net: the 6 hex digits are the start of
  SHA-256(\"<recipe>\\n<pr>\\n<ref>\"), so the same recipe, PR and ref always give the
  same domain (two builds of one commit wait for each other on its app lock) and a new
  push a new one. A run's cold dependency: `ccci-rundir domain --recipe <dependency>`
  (PR and REF from the build), unique to the run.
  A domain that the janitor's run-app pattern does not match is refused (status 125):
  the janitor would never reap what a crashed run left of it.

IN THE DRONE STEP:
  Under /bin/sh -e, CCCI_DOMAIN=$(ccci-rundir domain) on a line of its own (a plain
  assignment: a failure stops the step), then export CCCI_DOMAIN.
  Not `export CCCI_DOMAIN=$(...)`, whose status is export's: the step would go on with
  an empty domain.";

#[derive(Subcommand, Debug)]
pub(crate) enum Sub {
    /// Remove what ccci laid out in idle runs nobody holds; keep what the run wrote there
    #[command(after_help = GC_AFTER_HELP)]
    Gc {
        /// Remove the abra tree and state of runs idle longer than this (e.g. 7d); keep their results
        #[arg(long, value_name = "DUR", value_parser = duration_arg)]
        older_than: Duration,
        /// Also remove whole runs idle longer than this, results included (e.g. 90d) [default: never]
        #[arg(long, value_name = "DUR", value_parser = duration_arg)]
        results_older_than: Option<Duration>,
        /// Say what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// One JSON document: {"version":1,"removed":[...],"pruned":[...],"kept":[...],"failed":[...]}
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Print the run's app domain, derived from the build's RECIPE, PR and REF
    #[command(after_help = DOMAIN_AFTER_HELP)]
    Domain {
        /// The recipe (a dependency's, for its domain)
        #[arg(long, value_name = "RECIPE", env = EnvVars::RECIPE)]
        recipe: Option<String>,
        /// The pull request number
        #[arg(long, value_name = "PR", env = EnvVars::PR)]
        pr: Option<String>,
        /// The commit under test
        #[arg(long = "ref", value_name = "REF", env = EnvVars::REF)]
        git_ref: Option<String>,
        /// What follows `<prefix>-<hex>.`
        #[arg(long, value_name = "DOMAIN", env = EnvVars::CCCI_DOMAIN_SUFFIX, default_value = defaults::DOMAIN_SUFFIX)]
        suffix: String,
        /// The janitor's run-app pattern, which the domain must match
        #[arg(long, value_name = "RE", env = EnvVars::CCCI_RUN_APP_RE, default_value = defaults::RUN_APP_RE)]
        run_app_re: String,
    },
}
