//! The abra tree's layout, in one place: an app's config is
//! `<abra dir>/servers/<server>/<domain>.env`, recipes are cloned under
//! `<abra dir>/recipes/`. ccci-deploy writes and removes `.env`s, the teardown and the
//! janitor find them, ccci-rundir links a run's `servers/` to the host's and gives it its
//! own `recipes/`.
//!
//! Server directories that are symlinks are not followed: a link under `servers/` could
//! point anywhere, and what is found there is removed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::domain::Domain;

/// The directory of app configs, one subdirectory per server.
pub const SERVERS: &str = "servers";
/// The directory of recipe checkouts.
pub const RECIPES: &str = "recipes";

/// `<abra dir>/servers`.
pub fn servers(abra_dir: &Path) -> PathBuf {
    abra_dir.join(SERVERS)
}

/// `<abra dir>/servers/<server>/<domain>.env`.
pub fn env_file(abra_dir: &Path, server: &str, domain: &Domain) -> PathBuf {
    abra_dir
        .join(SERVERS)
        .join(server)
        .join(format!("{domain}.env"))
}

/// `<abra dir>/recipes/<recipe>`: where abra reads the recipe it deploys from.
pub fn recipe_dir(abra_dir: &Path, recipe: &str) -> PathBuf {
    abra_dir.join(RECIPES).join(recipe)
}

/// Domains with a `<servers>/*/<domain>.env` (symlinked server directories not followed).
pub fn env_domains(servers: &Path) -> Vec<Domain> {
    let mut found = Vec::new();
    for dir in fs::read_dir(servers).into_iter().flatten().flatten() {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for env in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let name = env.file_name();
            let name = name.to_string_lossy();
            if let Some(d) = name
                .strip_suffix(".env")
                .and_then(|d| Domain::parse(d).ok())
            {
                found.push(d);
            }
        }
    }
    found
}

/// `<servers>/*/<domain>.env` that exist, not following symlinked server directories.
pub fn env_files(servers: &Path, domain: &Domain) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(servers) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(format!("{domain}.env")))
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_found_in_real_server_dirs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let servers = tmp.path().join("servers");
        let d = Domain::parse("a.b").unwrap();
        fs::create_dir_all(servers.join("default")).unwrap();
        fs::write(servers.join("default/a.b.env"), "").unwrap();
        fs::write(servers.join("default/a.b.c.env"), "").unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("a.b.env"), "").unwrap();
        std::os::unix::fs::symlink(&elsewhere, servers.join("linked")).unwrap();
        assert_eq!(env_files(&servers, &d), [servers.join("default/a.b.env")]);
    }
}
