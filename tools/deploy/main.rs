//! ccci-deploy: deploy and tear down one app on the swarm, only under its app lock; wait
//! for convergence; count deploys.

mod cli;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ccci_core::cli::{emit, parse_or_exit, run_tool};
use ccci_core::deploy::calls::{self, Deploy};
use ccci_core::deploy::convergence::{self, Outcome};
use ccci_core::deploy::teardown::{Removed, Teardown, TeardownError};
use ccci_core::deploy::{self, Abra};
use ccci_core::domain::Domain;
use ccci_core::env::{EnvVars, non_empty};
use ccci_core::exit::{Exit, Failure, OrExit};
use ccci_core::lock::lockdir::LockDir;
use ccci_core::lock::runlocks;
use ccci_core::swarm::docker::Docker;
use ccci_core::swarm::{Inventory, StackResources};
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
            let app = Request {
                domain: &d,
                recipe: &recipe,
                server: &server,
                sets: &sets,
                version: version.as_deref(),
                abra_args: &abra_args,
            };
            let wait = Wait {
                timeout,
                stable_for,
            };
            up(&app, wait)
        }),
        Cmd::Down {
            domain,
            timeout,
            no_verify,
            ..
        } => domain_arg(&domain).and_then(|d| down(&d, timeout, !no_verify)),
        Cmd::Status { domain, json } => domain_arg(&domain).and_then(|d| status(&d, json)),
        Cmd::Count { domain, expect } => match domain.as_deref().map(domain_arg).transpose() {
            Ok(d) => count(d.as_ref(), expect),
            Err(e) => Err(e),
        },
    };
    ExitCode::from(run_tool(TOOL, Exit::Failure, result.map(Exit::code)) as u8)
}

fn domain_arg(s: &str) -> Result<Domain, Failure> {
    Domain::parse(s).or_exit(Exit::Usage)
}

/// The lock rule: up and down run only while holding DOMAIN's app lock, so a deploy can
/// never be counted or made before the lock is taken.
fn require_lock(domain: &Domain) -> Result<(), Failure> {
    match runlocks::held_by_this_run(&LockDir::from_env(), domain) {
        Ok(Some(_)) => {
            runlocks::keep_locks_from_children();
            Ok(())
        }
        // Cannot tell (EMFILE): never act as the holder on a guess.
        Err(e) => Err(Failure::with(
            Exit::Unavailable,
            anyhow::anyhow!("cannot tell whether this run holds the app lock for {domain}: {e}"),
        )),
        Ok(None) => Err(Failure::with(
            Exit::Misconfigured,
            anyhow::anyhow!(
                "not holding the app lock for {domain} — run under 'ccci-lock {domain} -- ...'"
            ),
        )),
    }
}

fn abra_dir() -> Result<PathBuf, Failure> {
    deploy::abra_dir().ok_or_else(|| {
        Failure::with(
            Exit::Misconfigured,
            anyhow::anyhow!(
                "no abra tree: neither ABRA_DIR, {} nor HOME is set",
                EnvVars::CCCI_CANONICAL_ABRA_DIR
            ),
        )
    })
}

/// The run's deploy count file (`CCCI_DEPLOY_COUNT_FILE`, set by ccci-rundir): `up`
/// counts into it, `count` reads it.
fn count_file() -> Result<PathBuf, Failure> {
    non_empty(EnvVars::CCCI_DEPLOY_COUNT_FILE)
        .map(PathBuf::from)
        .ok_or_else(|| {
            Failure::with(
                Exit::Misconfigured,
                anyhow::anyhow!(
                    "{} is not set — run under 'ccci-rundir -- ...'",
                    EnvVars::CCCI_DEPLOY_COUNT_FILE
                ),
            )
        })
}

/// How `up` waits for convergence: `--timeout` and `--stable-for`.
struct Wait {
    timeout: Duration,
    stable_for: Duration,
}

/// What `up` deploys: the app, its recipe and server, `--set`, `--version`, `--abra-arg`.
struct Request<'a> {
    domain: &'a Domain,
    recipe: &'a str,
    server: &'a str,
    sets: &'a [(String, String)],
    version: Option<&'a str>,
    abra_args: &'a [String],
}

fn up(app: &Request<'_>, wait: Wait) -> Result<Exit, Failure> {
    let Request {
        domain,
        recipe,
        server,
        ..
    } = *app;
    require_lock(domain)?;
    let count_file = count_file()?;
    // --timeout bounds all of `up`: every docker and abra call ends with it (a hung one
    // is killed), and convergence gets what is left.
    let deadline = Instant::now() + wait.timeout;
    let docker = Docker::from_env().until(deadline);
    docker.ping()?;
    let tree = abra_dir()?;
    let abra = Abra::from_env().in_tree(&tree).until(deadline);
    abra.check()?;
    // abra deploys (and reads the secrets to generate) only from the tree, and the name
    // check reads the recipe there: a recipe not in it yet — a first deploy, or a new
    // run's fresh tree for an app an earlier run made — is fetched first. One the harness
    // checked out is used as it is.
    let recipe_dir = ccci_core::abra::recipe_dir(&tree, recipe);
    if !recipe_dir.is_dir() {
        say!("== deploy: fetching recipe {recipe} into this tree ==");
        abra.run(&calls::recipe_fetch(recipe))?;
    }
    // Before anything of the app exists, and before it is counted: a domain too long
    // for its recipe never deploys.
    check_names(domain, recipe, &recipe_dir)?;
    deploy::record_deploy(&count_file, domain)
        .with_context(|| format!("cannot count the deploy in {}", count_file.display()))?;
    let env = ccci_core::abra::env_file(&tree, server, domain);
    let generate = calls::secret_generate(domain.as_str());
    if !env.exists() {
        say!("== deploy: creating app {domain} ({recipe} on {server}) ==");
        abra.run(&calls::app_new(recipe, server, domain.as_str()))?;
        abra.run(&generate)?;
    } else {
        // The app exists: an earlier run made it, maybe only in part (`app new` writes the
        // .env before any secret is made; a step after it failed or was killed), in a
        // private tree that is not this one. Make what is missing, whatever step it was.
        let missing = missing_secrets(&docker, &env, &domain.stack_name())?;
        if !missing.is_empty() {
            say!(
                "== deploy: app {domain} exists; generating its missing secrets ({}) ==",
                missing.join(", ")
            );
            abra.run(&generate)?;
        }
    }
    deploy::apply_sets(&env, app.sets)
        .with_context(|| format!("cannot apply --set to {}", env.display()))?;
    // abra refuses to deploy over a deployed stack unless told to: an earlier `up` of
    // this run, or an app an earlier run left, is upgraded in place.
    let redeploy = is_deployed(&docker, &domain.stack_name())?;
    if redeploy {
        say!("== deploy: {domain} is deployed; redeploying it in place ==");
    }
    let what = app.version.map_or(Deploy::Tree, Deploy::Version);
    let deploy_args = calls::app_deploy(domain.as_str(), &what, redeploy, app.abra_args);
    say!("== deploy: {} ==", deploy_args.join(" "));
    abra.run(&deploy_args)?;
    let stack = domain.stack_name();
    let stable_for = wait.stable_for;
    let mut progress = |p: convergence::Progress<'_>| {
        let ready = p.services.iter().filter(|s| convergence::ready(s)).count();
        let waiting: Vec<String> = p
            .services
            .iter()
            .filter(|s| !convergence::ready(s))
            .map(|s| convergence::short(s, &stack))
            .collect();
        // Every service ready but not converged: its tasks have not been stable long enough.
        let waiting = match waiting.is_empty() {
            true => format!("tasks not stable for {} yet", duration::format(stable_for)),
            false => waiting.join(", "),
        };
        say!(
            "== deploy: {domain} converging — {ready}/{} services ready ({waiting}), {} ==",
            p.services.len(),
            duration::format(p.elapsed)
        );
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match convergence::wait(&docker, &stack, left, wait.stable_for, &mut progress)? {
        Outcome::Converged { services, after } => {
            say!(
                "== deploy: {domain} converged in {} ({services} service{}) ==",
                duration::format(after),
                if services == 1 { "" } else { "s" }
            );
            Ok(Exit::Success)
        }
        Outcome::TimedOut {
            services,
            unsettled,
            after,
        } => {
            say!(
                "== deploy: {domain} did not converge in {} ==",
                duration::format(after)
            );
            if services.is_empty() {
                diag!(TOOL, "{domain}: the stack {stack} has no services");
            }
            // All replicas up at the last look means their tasks never stayed up for
            // --stable-for (they keep failing): name those tasks, and every service.
            let all_look_ready = services.iter().all(convergence::ready);
            for s in services
                .iter()
                .filter(|s| all_look_ready || !convergence::ready(s))
            {
                let error = convergence::last_task_error(&docker, s)?
                    .unwrap_or_else(|| "no failed task".into());
                let state = s.update_state.as_deref().unwrap_or("no update");
                let what = if all_look_ready {
                    "tasks not stable"
                } else {
                    "not ready"
                };
                diag!(TOOL, "{what}: {} {} ({state}): {error}", s.name, s.replicas);
            }
            if all_look_ready {
                for why in &unsettled {
                    diag!(TOOL, "  {why}");
                }
            }
            Ok(Exit::Failure)
        }
    }
}

/// Refuse a domain whose stack would make a name swarm refuses (status 2), naming each.
fn check_names(domain: &Domain, recipe: &str, recipe_dir: &std::path::Path) -> Result<(), Failure> {
    let stack = domain.stack_name();
    let too_long = deploy::names::too_long(recipe_dir, &stack).with_context(|| {
        format!(
            "cannot read the recipe {recipe} in {}",
            recipe_dir.display()
        )
    })?;
    if too_long.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = too_long.iter().map(|t| format!("  {t}")).collect();
    Err(Failure::with(
        Exit::Usage,
        anyhow::anyhow!(
            "{domain} is too long for recipe {recipe}: its stack {stack} would make names past \
             docker's limits ({} characters for a service, {} for a secret); nothing was \
             created:\n{}",
            deploy::names::SERVICE_MAX,
            deploy::names::SECRET_MAX,
            each.join("\n")
        ),
    ))
}

/// The stack has services: abra's test for a deployed app.
fn is_deployed(docker: &Docker, stack: &str) -> Result<bool, Failure> {
    let filter = format!("label={}={stack}", ccci_core::swarm::NAMESPACE);
    let ids = docker
        .json_lines_as::<String, _>(&["service", "ls", "--filter", &filter], "{{json .ID}}")?;
    Ok(!ids.is_empty())
}

/// The secrets the app's `.env` declares that the swarm does not have (a run that failed
/// or was killed before or during `abra app secret generate` left them unmade).
fn missing_secrets(
    docker: &Docker,
    env: &std::path::Path,
    stack: &str,
) -> Result<Vec<String>, Failure> {
    let declared = deploy::declared_secrets(env, stack)
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

fn down(domain: &Domain, timeout: Duration, verify: bool) -> Result<Exit, Failure> {
    require_lock(domain)?;
    // Every docker call ends with --timeout: a hung one is killed.
    let docker = Docker::from_env().until(Instant::now() + timeout);
    docker.ping()?;
    let servers = ccci_core::abra::servers(&abra_dir()?);
    let teardown = Teardown {
        docker: &docker,
        domain,
        known: BTreeSet::new(),
        lock_dir: Some(LockDir::from_env()),
        servers_dir: servers,
        timeout,
    };
    let start = Instant::now();
    let removed: Removed = match verify {
        true => match teardown.run_verified() {
            Err(TeardownError::Left(left)) => {
                diag!(TOOL, "teardown of {domain} left: {left}");
                return Ok(Exit::Failure);
            }
            other => other?,
        },
        false => teardown.run()?,
    };
    say!(
        "== teardown: {domain} — removed {} in {} ==",
        removed.describe(),
        duration::format(start.elapsed())
    );
    Ok(Exit::Success)
}

fn status(domain: &Domain, json: bool) -> Result<Exit, Failure> {
    let docker = Docker::from_env();
    let servers = ccci_core::abra::servers(&abra_dir()?);
    let inventory = Inventory::collect(&docker)?;
    let mut known = inventory.labelled_stacks();
    known.extend(ccci_core::deploy::teardown::known_stacks(
        &servers,
        Some(&LockDir::from_env()),
    ));
    let stack = domain.stack_name();
    let res: StackResources = inventory.of(&stack, &known);
    let envs = ccci_core::abra::env_files(&servers, domain);
    if json {
        let doc = serde_json::json!({
            "version": 1, "domain": domain.as_str(), "stack": stack,
            "services": res.services, "volumes": res.volumes, "secrets": res.secrets,
            "configs": res.configs, "networks": res.networks,
            "env_files": envs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        emit(&format!("{doc}\n"))?;
    } else {
        let mut out = format!("{domain} (stack {stack})\n");
        for s in &res.services {
            let state = s.update_state.as_deref().unwrap_or("-");
            out.push_str(&format!("  service {} {} {state}\n", s.name, s.replicas));
        }
        for line in res.describe().iter().filter(|l| !l.starts_with("service ")) {
            out.push_str(&format!("  {line}\n"));
        }
        for env in &envs {
            out.push_str(&format!("  env file {}\n", env.display()));
        }
        emit(&out)?;
    }
    Ok(Exit::Success)
}

fn count(domain: Option<&Domain>, expect: Option<usize>) -> Result<Exit, Failure> {
    let file = count_file()?;
    let n = deploy::deploys(&file, domain)
        .with_context(|| format!("cannot read {}", file.display()))?;
    emit(&format!("{n}\n"))?;
    match expect {
        Some(want) if want != n => {
            say!("!! deploy-count {n} != {want} (DG4.1 violation)");
            Ok(Exit::Failure)
        }
        _ => Ok(Exit::Success),
    }
}
