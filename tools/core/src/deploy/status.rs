//! `ccci-deploy status`: what exists of an app — its stack's resources on the swarm
//! and its `.env` files in the abra tree — as text or as one JSON document.

use std::path::PathBuf;

use super::rules;
use super::teardown::known_stacks;
use crate::domain::Domain;
use crate::exit::Failure;
use crate::lock::lockdir::LockDir;
use crate::swarm::docker::Docker;
use crate::swarm::{Inventory, StackResources};

/// What exists of one app.
pub struct AppStatus<'a> {
    pub domain: &'a Domain,
    pub stack: String,
    pub resources: StackResources,
    pub env_files: Vec<PathBuf>,
}

impl<'a> AppStatus<'a> {
    /// Look, touching nothing. Unlabelled secrets and configs are claimed by the
    /// longest-prefix rule over the same known stacks as the teardown's (labels, `.env`
    /// files, lockfiles).
    pub fn collect(domain: &'a Domain) -> Result<AppStatus<'a>, Failure> {
        let docker = Docker::from_env();
        let servers = crate::abra::servers(&rules::abra_dir()?);
        let inventory = Inventory::collect(&docker)?;
        let mut known = inventory.labelled_stacks();
        known.extend(known_stacks(&servers, Some(&LockDir::from_env())));
        let stack = domain.stack_name();
        let resources = inventory.of(&stack, &known);
        let env_files = crate::abra::env_files(&servers, domain);
        Ok(AppStatus {
            domain,
            stack,
            resources,
            env_files,
        })
    }

    /// `--json`: one document, version 1, on one line.
    pub fn json(&self) -> String {
        let res = &self.resources;
        let doc = serde_json::json!({
            "version": 1, "domain": self.domain.as_str(), "stack": self.stack,
            "services": res.services, "volumes": res.volumes, "secrets": res.secrets,
            "configs": res.configs, "networks": res.networks,
            "env_files": self.env_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        format!("{doc}\n")
    }

    /// The text form: the domain and stack, then one indented line a resource.
    pub fn text(&self) -> String {
        let mut out = format!("{} (stack {})\n", self.domain, self.stack);
        for s in &self.resources.services {
            let state = s.update_state.as_deref().unwrap_or("-");
            out.push_str(&format!("  service {} {} {state}\n", s.name, s.replicas));
        }
        let others = self.resources.describe();
        for line in others.iter().filter(|l| !l.starts_with("service ")) {
            out.push_str(&format!("  {line}\n"));
        }
        for env in &self.env_files {
            out.push_str(&format!("  env file {}\n", env.display()));
        }
        out
    }
}
