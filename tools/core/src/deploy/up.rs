//! `ccci-deploy up`: the deploy steps in order — the lock rule, the count file, docker and
//! abra reachable, the recipe in the tree, the name check, the count, the app made (or
//! what an earlier run left unmade), `--set`, the deploy, the wait for convergence.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::calls::{self, Deploy};
use super::{Abra, apply_sets, convergence, declared_secrets, names, record_deploy, rules};
use crate::domain::Domain;
use crate::exit::Failure;
use crate::say;
use crate::swarm::docker::Docker;

/// What `up` deploys (the app, its recipe and server, `--set`, `--version`,
/// `--abra-arg`), and how it waits for convergence (`--timeout`, `--stable-for`).
pub struct Up<'a> {
    pub domain: &'a Domain,
    pub recipe: &'a str,
    pub server: &'a str,
    pub sets: &'a [(String, String)],
    pub version: Option<&'a str>,
    pub abra_args: &'a [String],
    pub timeout: Duration,
    pub stable_for: Duration,
}

impl Up<'_> {
    /// Deploy and wait, saying each step on stderr. `Ok(true)`: the stack converged;
    /// `Ok(false)`: it did not within `--timeout` (what kept it was said).
    pub fn run(&self) -> Result<bool, Failure> {
        let Up {
            domain,
            recipe,
            server,
            ..
        } = *self;
        rules::require_lock(domain)?;
        let count_file = rules::count_file()?;
        // --timeout bounds all of `up`: every docker and abra call ends with it (a hung
        // one is killed), and convergence gets what is left.
        let deadline = Instant::now() + self.timeout;
        let stack = domain.stack_name();
        let docker = Docker::from_env().until(deadline);
        docker.ping()?;
        let tree = rules::abra_dir()?;
        let abra = Abra::from_env().in_tree(&tree).until(deadline);
        abra.check()?;
        // abra deploys (and reads the secrets to generate) only from the tree, and the
        // name check reads the recipe there: a recipe not in it yet — a first deploy, or
        // a new run's fresh tree for an app an earlier run made — is fetched first. One
        // the harness checked out is used as it is.
        let recipe_dir = crate::abra::recipe_dir(&tree, recipe);
        if !recipe_dir.is_dir() {
            say!("== deploy: fetching recipe {recipe} into this tree ==");
            abra.run(&calls::recipe_fetch(recipe))?;
        }
        // Before anything of the app exists, and before it is counted: a domain too long
        // for its recipe never deploys.
        names::refuse_too_long(domain, recipe, &recipe_dir)?;
        record_deploy(&count_file, domain)
            .with_context(|| format!("cannot count the deploy in {}", count_file.display()))?;
        let env = crate::abra::env_file(&tree, server, domain);
        let generate = calls::secret_generate(domain.as_str());
        if !env.exists() {
            say!("== deploy: creating app {domain} ({recipe} on {server}) ==");
            abra.run(&calls::app_new(recipe, server, domain.as_str()))?;
            abra.run(&generate)?;
        } else {
            // The app exists: an earlier run made it, maybe only in part (`app new`
            // writes the .env before any secret is made; a step after it failed or was
            // killed), in a private tree that is not this one. Make what is missing,
            // whatever step it was.
            let missing = missing_secrets(&docker, &env, &stack)?;
            if !missing.is_empty() {
                say!(
                    "== deploy: app {domain} exists; generating its missing secrets ({}) ==",
                    missing.join(", ")
                );
                abra.run(&generate)?;
            }
        }
        apply_sets(&env, self.sets)
            .with_context(|| format!("cannot apply --set to {}", env.display()))?;
        // abra refuses to deploy over a deployed stack unless told to: an earlier `up` of
        // this run, or an app an earlier run left, is upgraded in place.
        let redeploy = is_deployed(&docker, &stack)?;
        if redeploy {
            say!("== deploy: {domain} is deployed; redeploying it in place ==");
        }
        let what = self.version.map_or(Deploy::Tree, Deploy::Version);
        let deploy_args = calls::app_deploy(domain.as_str(), &what, redeploy, self.abra_args);
        say!("== deploy: {} ==", deploy_args.join(" "));
        abra.run(&deploy_args)?;
        let mut progress = |p: convergence::Progress<'_>| {
            convergence::say_progress(domain, &stack, self.stable_for, &p)
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = convergence::wait(&docker, &stack, left, self.stable_for, &mut progress)?;
        Ok(convergence::say_outcome(&docker, domain, &stack, &outcome)?)
    }
}

/// The stack has services: abra's test for a deployed app.
fn is_deployed(docker: &Docker, stack: &str) -> Result<bool, Failure> {
    let filter = format!("label={}={stack}", crate::swarm::NAMESPACE);
    let ids = docker
        .json_lines_as::<String, _>(&["service", "ls", "--filter", &filter], "{{json .ID}}")?;
    Ok(!ids.is_empty())
}

/// The secrets the app's `.env` declares that the swarm does not have (a run that failed
/// or was killed before or during `abra app secret generate` left them unmade).
fn missing_secrets(docker: &Docker, env: &Path, stack: &str) -> Result<Vec<String>, Failure> {
    let declared = declared_secrets(env, stack)
        .with_context(|| format!("cannot read the secrets of {}", env.display()))?;
    if declared.is_empty() {
        return Ok(declared);
    }
    let present: BTreeSet<String> = docker
        .json_lines_as::<String, _>(&["secret", "ls"], "{{json .Name}}")?
        .into_iter()
        .collect();
    Ok(declared
        .into_iter()
        .filter(|s| !present.contains(s))
        .collect())
}
