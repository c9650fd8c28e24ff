//! Docker's limits on the names an app's stack makes, checked before anything of the app
//! is created: swarm refuses a service name over 63 characters ("name must be 63
//! characters or fewer", a DNS label) and a secret or config name over 64 ("invalid
//! name, only 64 [a-zA-Z0-9-_.] characters allowed"). A domain that is too long for its
//! recipe would otherwise get as far as `abra app secret generate` or `abra app deploy`
//! and fail there, half made.
//!
//! The names are the ones abra makes: `<stack>_<service>` for each service of the
//! recipe's `compose.yml`, and `<stack>_<secret>_<version>` for each
//! `SECRET_<NAME>_VERSION=<version>` of its `.env.sample`.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;
use yaml_rust2::YamlLoader;

use crate::domain::Domain;
use crate::exit::{Exit, Failure};

/// Swarm's longest service name.
pub const SERVICE_MAX: usize = 63;
/// Swarm's longest secret (and config) name.
pub const SECRET_MAX: usize = 64;

/// A name the stack would make that swarm refuses.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong {
    /// "service" or "secret".
    pub kind: &'static str,
    pub name: String,
    pub limit: usize,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} name {} is {} characters, docker allows {}",
            self.kind,
            self.name,
            self.name.len(),
            self.limit
        )
    }
}

/// The service names of `<recipe>/compose.yml` (none when it is missing: abra says so).
pub fn compose_services(recipe: &Path) -> io::Result<Vec<String>> {
    let text = match fs::read_to_string(recipe.join("compose.yml")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| io::Error::other(format!("{}/compose.yml: {e}", recipe.display())))?;
    Ok(docs
        .first()
        .and_then(|d| d["services"].as_hash())
        .map(|services| {
            services
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Every name the stack `stack` of the recipe checked out at `recipe` would make that is
/// too long for swarm.
pub fn too_long(recipe: &Path, stack: &str) -> io::Result<Vec<TooLong>> {
    let services = compose_services(recipe)?
        .into_iter()
        .map(|s| (format!("{stack}_{s}"), "service", SERVICE_MAX));
    let sample = recipe.join(".env.sample");
    let secrets = match super::declared_secrets(&sample, stack) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let secrets = secrets.into_iter().map(|s| (s, "secret", SECRET_MAX));
    Ok(services
        .chain(secrets)
        .filter(|(name, _, limit)| name.len() > *limit)
        .map(|(name, kind, limit)| TooLong { kind, name, limit })
        .collect())
}

/// Refuse a domain whose stack would make a name swarm refuses (status 2), naming each:
/// `up` asks before anything of the app exists, so nothing is left half made.
pub fn refuse_too_long(domain: &Domain, recipe: &str, recipe_dir: &Path) -> Result<(), Failure> {
    let stack = domain.stack_name();
    let too_long = too_long(recipe_dir, &stack).with_context(|| {
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
             docker's limits ({SERVICE_MAX} characters for a service, {SECRET_MAX} for a \
             secret); nothing was created:\n{}",
            each.join("\n")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_dockers_limits_are_found_and_only_those() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::write(
            r.join("compose.yml"),
            "version: '3.8'\nservices:\n  app:\n    image: x\n  database:\n    image: y\n",
        )
        .unwrap();
        fs::write(
            r.join(".env.sample"),
            "SECRET_DB_PASSWORD_VERSION=v1 # length=32\n",
        )
        .unwrap();
        // 58 + "_app" = 62, "_database" = 67 (> 63); "_db_password_v1" = 73 (> 64).
        let stack = "s".repeat(58);
        let found = too_long(r, &stack).unwrap();
        assert_eq!(
            found,
            [
                TooLong {
                    kind: "service",
                    name: format!("{stack}_database"),
                    limit: 63
                },
                TooLong {
                    kind: "secret",
                    name: format!("{stack}_db_password_v1"),
                    limit: 64
                },
            ]
        );
        // At the limits exactly: nothing. 63 - "_database" = 54; 64 - "_db_password_v1" = 49.
        assert!(too_long(r, &"s".repeat(49)).unwrap().is_empty());
        assert_eq!(too_long(r, &"s".repeat(50)).unwrap().len(), 1);
        // No recipe files: nothing to check (abra reports the missing recipe).
        assert!(too_long(&r.join("none"), &stack).unwrap().is_empty());
    }
}
