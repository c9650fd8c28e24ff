//! An app's `.env` file, as ccci reads and edits it: the secrets it declares, and
//! `--set KEY=VALUE` written in place atomically.

use std::fs;
use std::io;
use std::path::Path;

/// The swarm secrets an app's `.env` says it uses, `<stack>_<name>_<version>`: one per
/// line `SECRET_<NAME>_VERSION=<version>`, abra's convention (its `.env.sample` has one for
/// each secret of the recipe; a `# length=32` after the version is abra's modifier, not
/// part of it). A commented-out line declares nothing; the last line for a name wins.
pub fn declared_secrets(env: &Path, stack: &str) -> io::Result<Vec<String>> {
    let text = fs::read_to_string(env)?;
    let mut versions = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(name) = key
            .trim()
            .strip_prefix("SECRET_")
            .and_then(|k| k.strip_suffix("_VERSION"))
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let version = value.split('#').next().unwrap_or("").trim();
        let version = version.trim_matches(|c| c == '"' || c == '\'');
        if !version.is_empty() {
            versions.insert(name.to_lowercase(), version.to_owned());
        }
    }
    Ok(versions
        .into_iter()
        .map(|(name, version)| format!("{stack}_{name}_{version}"))
        .collect())
}

/// Set `KEY=VALUE` in an env file: replace every line that sets KEY (the last one would
/// win for abra), or append one. Written to a new temporary file beside it (never
/// through an existing name) with the file's mode, then renamed over, so a reader never
/// sees half a file. A symlinked `.env` is refused rather than replaced by a copy.
pub fn apply_sets(env: &Path, sets: &[(String, String)]) -> io::Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(env)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symlink: not editing it",
            env.display()
        )));
    }
    let text = fs::read_to_string(env)?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, value) in sets {
        let sets_key = |l: &String| l.split_once('=').is_some_and(|(k, _)| k.trim() == key);
        let line = format!("{key}={value}");
        match lines.iter().position(sets_key) {
            Some(first) => {
                lines[first] = line;
                let mut i = 0;
                lines.retain(|l| {
                    i += 1;
                    i - 1 == first || !sets_key(l)
                });
            }
            None => lines.push(line),
        }
    }
    // abra reads it while we write: whole or not at all, its mode kept.
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    crate::files::atomic::write(env, (lines.join("\n") + "\n").as_bytes(), mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::args::parse_set;

    #[test]
    fn declared_secrets_are_the_env_files_secret_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let env = tmp.path().join("a.b.env");
        fs::write(
            &env,
            "TYPE=x\nSECRET_DB_PASSWORD_VERSION=v1\n\
             SECRET_ADMIN_TOKEN_VERSION=\"v2\" # length=32\n\
             #SECRET_SMTP_VERSION=v1\nSECRET__VERSION=v1\nSECRET_KEY_VERSION=\n\
             SECRET_DB_PASSWORD_VERSION=v3\nDOMAIN=a.b\n",
        )
        .unwrap();
        assert_eq!(
            declared_secrets(&env, "a_b").unwrap(),
            ["a_b_admin_token_v2", "a_b_db_password_v3"]
        );
        fs::write(&env, "TYPE=x\n").unwrap();
        assert!(declared_secrets(&env, "a_b").unwrap().is_empty());
    }

    #[test]
    fn sets_replace_or_append_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let env = tmp.path().join("a.b.env");
        fs::write(&env, "TYPE=x\nDOMAIN=a.b\n# COMMENT=1\nREPLICAS=1\n").unwrap();
        let sets = vec![
            parse_set("REPLICAS=3").unwrap(),
            parse_set("NEW=a=b").unwrap(),
        ];
        apply_sets(&env, &sets).unwrap();
        assert_eq!(
            fs::read_to_string(&env).unwrap(),
            "TYPE=x\nDOMAIN=a.b\n# COMMENT=1\nREPLICAS=3\nNEW=a=b\n"
        );
        fs::write(&env, "R=1\nX=0\nR=2\n").unwrap();
        apply_sets(&env, &[parse_set("R=3").unwrap()]).unwrap();
        assert_eq!(
            fs::read_to_string(&env).unwrap(),
            "R=3\nX=0\n",
            "every line setting R"
        );
    }
}
