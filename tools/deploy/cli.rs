//! ccci-deploy's command line, apart from the program so that ccci-gen (tools/gen) builds
//! the man page and the shell completions from this very definition.

use std::time::Duration;

use ccci_core::cli::duration_arg;
use ccci_core::deploy;
use clap::{Parser, Subcommand};

pub(crate) use ccci_core::deploy::TOOL;

const AFTER_HELP: &str = "\
EXIT STATUS:
  0   done
  1   done, but something failed: abra failed, the stack did not converge in time,
      teardown left something behind, a count check failed, a docker or abra call
      did not finish within --timeout (it was killed)
  2   usage error, invalid domain, or a domain too long for its recipe: a service
      name (<stack>_<service>) past 63 characters or a secret name
      (<stack>_<secret>_<version>) past 64, found before anything is created
  69  docker unreachable, or abra not found
  78  the pipeline is wired wrong: up/down not under 'ccci-lock DOMAIN', or up outside
      'ccci-rundir' (no CCCI_DEPLOY_COUNT_FILE)

THE LOCK RULE:
  up and down need the run to hold DOMAIN's app lock, as the kernel says (/proc),
  not the variables: through a descriptor of ours (a shell harness passes CCCI_LOCK_FD on), of a process
  above us (a Python harness: subprocess closes descriptors, the harness still holds
  the lock), or of a keeper of this run (a dependency taken with
  `ccci-lock --for-run DOMAIN`). Another run's lock, or a descriptor that holds nothing
  or only a shared lock, is 78.

ENVIRONMENT:
  CCCI_APP_LOCK_DIR       lock dir, to check the app lock (default /run/lock/cc-ci)
  CCCI_DEPLOY_COUNT_FILE  set by ccci-rundir: where deploys are counted
  ABRA_DIR                the abra tree with servers/<server>/<domain>.env and recipes/
                          (set by ccci-rundir; outside a run dir CCCI_CANONICAL_ABRA_DIR,
                          else $HOME/.abra); abra is run with ABRA_DIR set to it
  CCCI_DOCKER, CCCI_ABRA  the docker and abra executables (docker, abra)

ABRA:
  Run as the cc-ci harness runs it: every call --offline --no-input (the recipe
  mirror needs credentials abra does not have), `app new`, `app secret generate`
  and `app deploy` --chaos (the checked-out tree, no release checked out over it;
  `app deploy <D> <version>` instead with --version), `app deploy`
  --no-converge-checks (ccci-deploy waits, bounded by --timeout), and --force when
  the app's stack is already deployed (an in-place upgrade)";

/// Deploy and tear down one app on the swarm, under its app lock.
#[derive(Parser, Debug)]
#[command(name = TOOL, version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Deploy DOMAIN (creating the app when its .env is missing) and wait until it converges
    Up {
        domain: String,
        /// The recipe, for `abra app new` (and `abra recipe fetch`)
        #[arg(long, value_parser = deploy::parse_recipe)]
        recipe: String,
        /// The abra server
        #[arg(long, default_value = "default", value_parser = deploy::parse_server)]
        server: String,
        /// Deploy this recipe version, which abra checks out (instead of the tree as it is)
        #[arg(long, conflicts_with = "chaos", value_parser = deploy::parse_version)]
        version: Option<String>,
        /// Deploy the recipe's checked-out tree as it is (abra --chaos): the default
        /// unless --version is given
        #[arg(long)]
        chaos: bool,
        /// Set KEY=VALUE in the app's .env before deploying (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = deploy::parse_set)]
        sets: Vec<(String, String)>,
        /// Pass this argument to `abra app deploy` verbatim (repeatable)
        #[arg(long = "abra-arg", value_name = "ARG", allow_hyphen_values = true)]
        abra_args: Vec<String>,
        /// How long all of it may take: abra, docker (a hung call is killed), convergence.
        /// The one timeout: abra is told not to wait itself (--no-converge-checks), so the
        /// app's TIMEOUT does not apply
        #[arg(long, value_name = "DUR", default_value = "25m", value_parser = duration_arg)]
        timeout: Duration,
        /// Converged only once every running task has run this long and no task failed
        /// within it (catches a task that crashes some seconds after it starts)
        #[arg(long, value_name = "DUR", default_value = "10s", value_parser = duration_arg)]
        stable_for: Duration,
    },
    /// Remove everything of DOMAIN: services, secrets, configs, networks, volumes, .env
    Down {
        domain: String,
        /// The abra server (the .env is removed from every server dir)
        #[arg(long, default_value = "default", value_parser = deploy::parse_server)]
        server: String,
        /// How long all of it may take (a hung docker call is killed), the wait for
        /// containers to go and volumes to come free included
        #[arg(long, value_name = "DUR", default_value = "5m", value_parser = duration_arg)]
        timeout: Duration,
        /// Do not list everything again afterwards
        #[arg(long)]
        no_verify: bool,
    },
    /// Show what exists of DOMAIN
    Status {
        domain: String,
        /// One JSON document
        #[arg(long)]
        json: bool,
    },
    /// Print the number of deploys recorded in this run (CCCI_DEPLOY_COUNT_FILE)
    Count {
        /// Only deploys of this domain
        #[arg(long)]
        domain: Option<String>,
        /// Exit 1 (a DG4.1 violation) unless the count is exactly N
        #[arg(long, value_name = "N")]
        expect: Option<usize>,
    },
}
