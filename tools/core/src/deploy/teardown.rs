//! Tearing an app down completely, idempotently: what `ccci-deploy down` does, and what
//! the janitor does (under its probe lock) to an orphan.
//!
//! Order matters. Services go first (with the stack's labelled secrets, configs and
//! networks: what `docker stack rm` removes). `docker stack rm` returns before the
//! containers are gone, and a volume cannot be removed while a container still mounts it
//! ("volume is in use"), so we wait for the stack's containers to disappear and retry
//! volumes with backoff; `docker stack rm` never removes volumes at all. Then the secrets
//! and configs abra created without a label (claimed by the longest-prefix rule, see
//! `swarm`), and the app's `.env` files. A second teardown finds nothing and succeeds.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::abra;
use crate::domain::Domain;
use crate::swarm::docker::{Docker, DockerError};
use crate::swarm::{Inventory, NAMESPACE};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub services: usize,
    pub volumes: usize,
    pub secrets: usize,
    pub configs: usize,
    pub networks: usize,
    pub env_files: usize,
}

impl Removed {
    pub fn plus(&self, other: &Removed) -> Removed {
        Removed {
            services: self.services + other.services,
            volumes: self.volumes + other.volumes,
            secrets: self.secrets + other.secrets,
            configs: self.configs + other.configs,
            networks: self.networks + other.networks,
            env_files: self.env_files + other.env_files,
        }
    }

    pub fn total(&self) -> usize {
        self.services + self.volumes + self.secrets + self.configs + self.networks + self.env_files
    }

    /// `2 services, 1 volume, 3 secrets, 1 network, 1 env file` (kinds with none left out).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.services, "service"),
            (self.volumes, "volume"),
            (self.secrets, "secret"),
            (self.configs, "config"),
            (self.networks, "network"),
            (self.env_files, "env file"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
        .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("{what} still there after {after:?}: {detail}")]
    TimedOut {
        what: String,
        after: Duration,
        detail: String,
    },
    #[error("cannot remove {}: {source}", path.display())]
    EnvFile { path: PathBuf, source: io::Error },
    #[error("left after the teardown: {0}")]
    Left(String),
}

pub struct Teardown<'a> {
    pub docker: &'a Docker,
    pub domain: &'a Domain,
    /// `$ABRA_DIR/servers`: the app's `.env` files live in its subdirectories.
    pub servers_dir: PathBuf,
    /// Stack names known besides the swarm's labels, for the longest-prefix rule. The
    /// `.env` files under `servers_dir` and the lockfiles in `lock_dir` are read again
    /// after every listing, on top of these: an app created since (its `.env` and lock
    /// appear before any of its secrets) must never lose a secret to a shorter name.
    pub known: BTreeSet<String>,
    pub lock_dir: Option<crate::lock::lockdir::LockDir>,
    /// How long to wait for containers to go and volumes to come free.
    pub timeout: Duration,
}

impl Teardown<'_> {
    pub fn run(&self) -> Result<Removed, TeardownError> {
        self.run_by(Instant::now() + self.timeout)
    }

    /// One teardown, its waits ending by `deadline`. (Its docker calls are bounded by
    /// the caller's [`Docker`]: `ccci-deploy down` and the janitor bound them by the
    /// same `--timeout`.)
    fn run_by(&self, deadline: Instant) -> Result<Removed, TeardownError> {
        let stack = self.domain.stack_name();
        let inventory = Inventory::collect(self.docker)?;
        let known = self.known_after(&inventory);
        let ours = inventory.of(&stack, &known);
        let labelled = |list: &[crate::swarm::Named], name: &String| {
            list.iter().any(|n| &n.name == name && n.stack.is_some())
        };
        let (labelled_secrets, unlabelled_secrets): (Vec<_>, Vec<_>) = ours
            .secrets
            .iter()
            .partition(|n| labelled(&inventory.secrets, n));
        let (labelled_configs, unlabelled_configs): (Vec<_>, Vec<_>) = ours
            .configs
            .iter()
            .partition(|n| labelled(&inventory.configs, n));
        let mut removed = Removed::default();

        // 1. What `docker stack rm` removes.
        for service in &ours.services {
            removed.services += self.remove(&["service", "rm", &service.name])?;
        }
        for secret in &labelled_secrets {
            removed.secrets += self.remove(&["secret", "rm", secret])?;
        }
        for config in &labelled_configs {
            removed.configs += self.remove(&["config", "rm", config])?;
        }
        // 2. Containers gone: only then are networks and volumes free.
        self.containers_gone(&stack, deadline)?;
        for network in &ours.networks {
            removed.networks += self.remove_retrying(&["network", "rm", network], deadline)?;
        }
        // 3. Volumes, which `docker stack rm` never removes.
        for volume in &ours.volumes {
            removed.volumes += self.remove_retrying(&["volume", "rm", volume], deadline)?;
        }
        // 4. What abra created without a label.
        for secret in &unlabelled_secrets {
            removed.secrets += self.remove(&["secret", "rm", secret])?;
        }
        for config in &unlabelled_configs {
            removed.configs += self.remove(&["config", "rm", config])?;
        }
        // 5. The app's configuration.
        for env in self.env_files() {
            match fs::remove_file(&env) {
                Ok(()) => removed.env_files += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(TeardownError::EnvFile { path: env, source }),
            }
        }
        Ok(removed)
    }

    /// Tear down, then list again until nothing is left, tearing down again while
    /// something is: docker's view settles late (a network the node re-creates while
    /// rejected tasks churn is listed for a moment after `network rm` succeeded). What is
    /// still there when `timeout` runs out is the error. One deadline for it all: a
    /// second teardown does not start the wait for containers and volumes over.
    pub fn run_verified(&self) -> Result<Removed, TeardownError> {
        let deadline = Instant::now() + self.timeout;
        let mut removed = self.run_by(deadline)?;
        let mut pause = Duration::from_millis(200);
        loop {
            let left = self.leftovers()?;
            if left.is_empty() {
                return Ok(removed);
            }
            if Instant::now() >= deadline {
                return Err(TeardownError::Left(left.join(", ")));
            }
            thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_secs(2));
            let again = self.run_by(deadline)?;
            removed = removed.plus(&again);
        }
    }

    /// What is still there of the app (for verification): resources and `.env` files.
    pub fn leftovers(&self) -> Result<Vec<String>, DockerError> {
        let inventory = Inventory::collect(self.docker)?;
        let known = self.known_after(&inventory);
        let mut left = inventory.of(&self.domain.stack_name(), &known).describe();
        left.extend(
            self.env_files()
                .iter()
                .map(|p| format!("env file {}", p.display())),
        );
        Ok(left)
    }

    /// Every stack name known right after `inventory` was listed.
    fn known_after(&self, inventory: &Inventory) -> BTreeSet<String> {
        let mut known = inventory.labelled_stacks();
        known.extend(self.known.iter().cloned());
        known.extend(known_stacks(&self.servers_dir, self.lock_dir.as_ref()));
        known
    }

    /// `servers/*/<domain>.env`, not following symlinks below `servers/`.
    pub fn env_files(&self) -> Vec<PathBuf> {
        abra::env_files(&self.servers_dir, self.domain)
    }

    /// Remove one resource; 1 if removed, 0 if it was already gone (idempotence).
    fn remove(&self, args: &[&str]) -> Result<usize, DockerError> {
        match self.docker.run(args) {
            Ok(_) => Ok(1),
            Err(e) if gone(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Remove one resource, retrying with backoff while docker says it is still in use.
    fn remove_retrying(&self, args: &[&str], deadline: Instant) -> Result<usize, TeardownError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.remove(args) {
                Err(e) if in_use(&e) => {
                    if Instant::now() >= deadline {
                        return Err(TeardownError::TimedOut {
                            what: args[2..].join(" "),
                            after: self.timeout,
                            detail: e.stderr().to_owned(),
                        });
                    }
                    thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return Ok(other?),
            }
        }
    }

    fn containers_gone(&self, stack: &str, deadline: Instant) -> Result<(), TeardownError> {
        let filter = format!("label={NAMESPACE}={stack}");
        let mut pause = Duration::from_millis(100);
        loop {
            let left = self.docker.run(&["ps", "-a", "-q", "--filter", &filter])?;
            let left: Vec<&str> = left.split_whitespace().collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TeardownError::TimedOut {
                    what: format!("{} containers of stack {stack}", left.len()),
                    after: self.timeout,
                    detail: left.join(" "),
                });
            }
            thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Stack names known from `.env` files and lockfiles.
pub fn known_stacks(
    servers: &Path,
    lock_dir: Option<&crate::lock::lockdir::LockDir>,
) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = abra::env_domains(servers)
        .iter()
        .map(Domain::stack_name)
        .collect();
    if let Some(domains) = lock_dir.and_then(|d| d.domains().ok()) {
        known.extend(domains.iter().map(Domain::stack_name));
    }
    known
}

/// Docker's "there is no such thing": already removed, which is what we wanted.
fn gone(e: &DockerError) -> bool {
    let s = e.stderr().to_ascii_lowercase();
    s.contains("not found") || s.contains("no such")
}

fn in_use(e: &DockerError) -> bool {
    let s = e.stderr();
    s.contains("in use") || s.contains("has active endpoints")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_what_was_removed() {
        let removed = Removed {
            services: 2,
            volumes: 1,
            secrets: 3,
            configs: 0,
            networks: 1,
            env_files: 1,
        };
        assert_eq!(
            removed.describe(),
            "2 services, 1 volume, 3 secrets, 1 network, 1 env file"
        );
        assert_eq!(removed.total(), 8);
        assert_eq!(Removed::default().describe(), "nothing");
    }

    #[test]
    fn an_app_created_after_the_pass_began_keeps_its_secrets() {
        // a.b is being torn down; a.b.c appeared since the caller computed `known`: only
        // its .env and lockfile exist besides its unlabelled secret. Read after the
        // listing, they must keep a.b from claiming that secret.
        let tmp = tempfile::tempdir().unwrap();
        let servers = tmp.path().join("servers");
        fs::create_dir_all(servers.join("default")).unwrap();
        fs::write(servers.join("default/a.b.c.env"), "").unwrap();
        let locks = crate::lock::lockdir::LockDir::new(tmp.path().join("locks"));
        locks.ensure().unwrap();
        let docker = Docker::from_env();
        let ab = Domain::parse("a.b").unwrap();
        let teardown = Teardown {
            docker: &docker,
            domain: &ab,
            servers_dir: servers.clone(),
            known: BTreeSet::new(),
            lock_dir: Some(locks),
            timeout: Duration::from_secs(1),
        };
        let inventory = Inventory {
            secrets: vec![
                crate::swarm::Named {
                    name: "a_b_c_db_password_v1".into(),
                    stack: None,
                },
                crate::swarm::Named {
                    name: "a_b_db_password_v1".into(),
                    stack: None,
                },
            ],
            ..Inventory::default()
        };
        let known = teardown.known_after(&inventory);
        assert_eq!(inventory.of("a_b", &known).secrets, ["a_b_db_password_v1"]);
        fs::remove_file(servers.join("default/a.b.c.env")).unwrap();
        fs::write(tmp.path().join("locks/cc-ci-app-a.b.c.lock"), "").unwrap();
        let known = teardown.known_after(&inventory);
        assert_eq!(
            inventory.of("a_b", &known).secrets,
            ["a_b_db_password_v1"],
            "the lockfile alone"
        );
    }
}
