//! What exists on the swarm, stack by stack: one listing per resource type, however many
//! stacks there are (the janitor's discovery must not cost a docker call per stack).
//!
//! Resources belong to a stack by the `com.docker.stack.namespace` label, which `docker
//! stack deploy` puts on services, networks, volumes, and the secrets and configs it
//! creates. abra creates secrets itself, unlabelled, named `<stack>_<name>_<version>`;
//! such a name is claimed by the *longest* known stack name it starts with followed by
//! `_`, because `a.b` → `a_b` is a prefix of `a.b.c` → `a_b_c`.
//!
//! [`docker`] is the one place the docker CLI is run.

pub mod docker;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::swarm::docker::{Docker, DockerError};

pub const NAMESPACE: &str = "com.docker.stack.namespace";

/// A service as convergence needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: String,
    pub id: String,
    /// As `docker service ls` shows it: `2/2`, `0/1 (1/1 completed)`, ...
    pub replicas: String,
    /// `.UpdateStatus.State` of `docker service inspect`, when there is one.
    pub update_state: Option<String>,
    #[serde(skip)]
    pub stack: Option<String>,
}

/// A named resource and the stack its label names, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub stack: Option<String>,
}

/// Everything of one stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StackResources {
    pub services: Vec<Service>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
    pub networks: Vec<String>,
}

impl StackResources {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.volumes.is_empty()
            && self.secrets.is_empty()
            && self.configs.is_empty()
            && self.networks.is_empty()
    }

    /// One line per resource, `service app`, for messages that list what is left.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .services
            .iter()
            .map(|s| format!("service {}", s.name))
            .collect();
        for (kind, names) in [
            ("volume", &self.volumes),
            ("secret", &self.secrets),
            ("config", &self.configs),
            ("network", &self.networks),
        ] {
            out.extend(names.iter().map(|n| format!("{kind} {n}")));
        }
        out
    }
}

/// The swarm's resources of every kind, listed once.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub services: Vec<Service>,
    pub volumes: Vec<Named>,
    pub networks: Vec<Named>,
    pub secrets: Vec<Named>,
    pub configs: Vec<Named>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceLine {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(default)]
    replicas: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceInspect {
    #[serde(rename = "ID")]
    id: String,
    spec: ServiceSpec,
    #[serde(default)]
    update_status: Option<UpdateStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSpec {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStatus {
    #[serde(default)]
    state: Option<String>,
}

/// A listing line as [`NAMED_FORMAT`] writes it: the name and the one label we need,
/// as JSON. (The `Labels` field of `{{json .}}` is a `k=v,k=v` string, which a label
/// value containing `,com.docker.stack.namespace=...` could spoof.)
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamedLine {
    name: String,
    #[serde(default)]
    stack: String,
}

const NAMED_FORMAT: &str =
    r#"{"Name":{{json .Name}},"Stack":{{json (.Label "com.docker.stack.namespace")}}}"#;

impl Inventory {
    /// List everything: at most six docker calls whatever the number of stacks.
    pub fn collect(docker: &Docker) -> Result<Inventory, DockerError> {
        let services = services(docker, None)?;
        let named = |kind: &str| -> Result<Vec<Named>, DockerError> {
            let lines: Vec<NamedLine> = docker.json_lines_as(&[kind, "ls"], NAMED_FORMAT)?;
            Ok(lines
                .into_iter()
                .map(|l| Named {
                    stack: Some(l.stack).filter(|s| !s.is_empty()),
                    name: l.name,
                })
                .collect())
        };
        Ok(Inventory {
            services,
            volumes: named("volume")?,
            networks: named("network")?,
            secrets: named("secret")?,
            configs: named("config")?,
        })
    }

    /// Every stack name a label mentions.
    pub fn labelled_stacks(&self) -> BTreeSet<String> {
        let named = [&self.volumes, &self.networks, &self.secrets, &self.configs];
        self.services
            .iter()
            .filter_map(|s| s.stack.clone())
            .chain(named.into_iter().flatten().filter_map(|n| n.stack.clone()))
            .collect()
    }

    /// What belongs to `stack`; `known` are all stack names known from anywhere
    /// (labels, `.env` files, lockfiles), for the longest-prefix rule.
    pub fn of(&self, stack: &str, known: &BTreeSet<String>) -> StackResources {
        let labelled = |list: &[Named]| -> Vec<String> {
            list.iter()
                .filter(|n| n.stack.as_deref() == Some(stack))
                .map(|n| n.name.clone())
                .collect()
        };
        let ours = |list: &[Named]| -> Vec<String> {
            list.iter()
                .filter(|n| match &n.stack {
                    Some(s) => s == stack,
                    None => owner(&n.name, known, stack) == Some(stack),
                })
                .map(|n| n.name.clone())
                .collect()
        };
        StackResources {
            services: self
                .services
                .iter()
                .filter(|s| s.stack.as_deref() == Some(stack))
                .cloned()
                .collect(),
            volumes: labelled(&self.volumes),
            networks: labelled(&self.networks),
            secrets: ours(&self.secrets),
            configs: ours(&self.configs),
        }
    }
}

/// The services of one stack (`Some`) or of all (`None`), with their replicas and
/// update state: `docker service ls`, then one `docker service inspect` of them all.
pub fn services(docker: &Docker, stack: Option<&str>) -> Result<Vec<Service>, DockerError> {
    services_retrying(docker, stack, 5)
}

fn services_retrying(
    docker: &Docker,
    stack: Option<&str>,
    tries: u32,
) -> Result<Vec<Service>, DockerError> {
    let mut ls = vec!["service".to_owned(), "ls".to_owned()];
    if let Some(stack) = stack {
        ls.extend(["--filter".to_owned(), format!("label={NAMESPACE}={stack}")]);
    }
    let lines: Vec<ServiceLine> = docker.json_lines(&ls)?;
    let mut inspected: Vec<ServiceInspect> = Vec::new();
    if !lines.is_empty() {
        let mut args = vec!["service".to_owned(), "inspect".to_owned()];
        args.extend(lines.iter().map(|l| l.id.clone()));
        match docker.json_lines::<ServiceInspect, _>(&args) {
            Ok(all) => inspected = all,
            // A service removed between the two calls fails the inspect of all: list
            // again rather than guess.
            Err(e) if tries > 1 && e.stderr().contains("no such service") => {
                return services_retrying(docker, stack, tries - 1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(lines
        .into_iter()
        .map(|l| {
            // `service ls` shows short ids, `inspect` full ones.
            let inspect = inspected.iter().find(|s| s.id.starts_with(&l.id));
            Service {
                stack: inspect.and_then(|s| s.spec.labels.get(NAMESPACE).cloned()),
                update_state: inspect
                    .and_then(|s| s.update_status.as_ref())
                    .and_then(|u| u.state.clone()),
                name: l.name,
                id: l.id,
                replicas: l.replicas,
            }
        })
        .collect())
}

/// The stack an unlabelled `name` belongs to: the longest of `known` (plus `stack`
/// itself, which is always known to its caller) that `name` starts with, followed by `_`.
/// Looks up each `_`-prefix of the name, longest first, so the cost does not grow with
/// the number of known stacks (a janitor pass knows thousands).
pub fn owner<'a>(name: &str, known: &'a BTreeSet<String>, stack: &'a str) -> Option<&'a str> {
    name.char_indices()
        .rev()
        .filter(|&(i, c)| c == '_' && i + 1 < name.len())
        .map(|(i, _)| &name[..i])
        .find_map(|prefix| {
            if prefix == stack {
                Some(stack)
            } else {
                known.get(prefix).map(String::as_str)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unlabelled_secrets_go_to_the_longest_known_prefix() {
        let k = known(&["a_b", "a_b_c", "x_y"]);
        assert_eq!(owner("a_b_db_password_v1", &k, "a_b"), Some("a_b"));
        assert_eq!(owner("a_b_c_db_password_v1", &k, "a_b"), Some("a_b_c"));
        assert_eq!(owner("a_b_c_db_password_v1", &k, "a_b_c"), Some("a_b_c"));
        assert_eq!(owner("a_bc_db_password_v1", &k, "a_b"), None);
        assert_eq!(
            owner("a_b", &k, "a_b"),
            None,
            "the bare stack name is no secret of it"
        );
        // The caller's own stack counts even when nothing else knows it (after a crash).
        assert_eq!(owner("q_r_s_v1", &known(&[]), "q_r"), Some("q_r"));
    }

    #[test]
    fn of_a_stack_takes_labelled_and_owned_resources_only() {
        let named = |name: &str, stack: Option<&str>| Named {
            name: name.into(),
            stack: stack.map(Into::into),
        };
        let inv = Inventory {
            services: vec![],
            volumes: vec![
                named("a_b_data", Some("a_b")),
                named("a_b_c_data", Some("a_b_c")),
            ],
            networks: vec![named("a_b_default", Some("a_b"))],
            secrets: vec![
                named("a_b_pw_v1", None),
                named("a_b_c_pw_v1", None),
                named("a_b_stack_made", Some("a_b")),
                named("other_pw_v1", None),
            ],
            configs: vec![],
        };
        let k = inv.labelled_stacks();
        assert_eq!(k, known(&["a_b", "a_b_c"]));
        let ab = inv.of("a_b", &k);
        assert_eq!(ab.volumes, ["a_b_data"]);
        assert_eq!(ab.networks, ["a_b_default"]);
        assert_eq!(ab.secrets, ["a_b_pw_v1", "a_b_stack_made"]);
        assert_eq!(inv.of("a_b_c", &k).secrets, ["a_b_c_pw_v1"]);
    }
}
