//! The pieces of `ccci-deploy up` that are not the swarm's: the deploy counter, the
//! app's `.env` file, and running abra.
//!
//! [`calls`] are abra's command lines, flagged as cc-ci runs abra; [`names`] checks the
//! swarm names an app would make against docker's limits; [`convergence`] waits for a
//! deployed stack to settle; [`teardown`] removes an app whole.

pub mod calls;
pub mod convergence;
pub mod names;
pub mod teardown;

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::child::bounded::{self, Bound, RunError};
use crate::domain::Domain;
use crate::env::{EnvVars, non_empty};
use crate::timefmt;

/// One line of the deploy count file.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRecord {
    pub domain: String,
    pub at: String,
    pub pid: u32,
}

/// Record one deploy of `domain`: one JSON line appended with a single `write(2)` on an
/// `O_APPEND` descriptor, so concurrent writers never interleave or overwrite.
pub fn record_deploy(count_file: &Path, domain: &Domain) -> io::Result<()> {
    let record = DeployRecord {
        domain: domain.to_string(),
        at: timefmt::now_seconds(),
        pid: std::process::id(),
    };
    let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(count_file)?;
    file.write_all(&line)
}

/// The number of deploys recorded (of `domain` only, if given). A missing file is 0; a
/// line that is not a record is not a deploy.
pub fn deploys(count_file: &Path, domain: Option<&Domain>) -> io::Result<usize> {
    let text = match fs::read(count_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<DeployRecord>(l).ok())
        .filter(|r| domain.is_none_or(|d| r.domain == d.as_str()))
        .count())
}

/// The abra tree `ccci-deploy` works in: `$ABRA_DIR` (in a run, `ccci-rundir` sets it to
/// the run's private tree), else the host's canonical tree that `ccci-rundir` links runs
/// to and the janitor reads (`CCCI_CANONICAL_ABRA_DIR`, else `$HOME/.abra`). abra is run
/// with `ABRA_DIR` set to it, so what abra writes is what ccci reads.
pub fn abra_dir() -> Option<PathBuf> {
    non_empty(EnvVars::ABRA_DIR)
        .map(PathBuf::from)
        .or_else(|| crate::env::canonical_abra_dir_from_env().ok())
}

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

/// Parse `--set KEY=VALUE`: KEY a shell-style name, VALUE on one line.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    let name = |k: &str| {
        k.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match s.split_once('=') {
        Some((k, v)) if name(k) && !v.contains(['\n', '\r', '\0']) => {
            Ok((k.to_owned(), v.to_owned()))
        }
        Some((k, _)) if name(k) => Err(format!("the value of {k} must be one line, got {s:?}")),
        _ => Err(format!(
            "expected KEY=VALUE with KEY of letters, digits and _ (not first a digit), got {s:?}"
        )),
    }
}

/// Refuse a server name that is not one path component (`--server /etc`, `..`).
pub fn parse_server(s: &str) -> Result<String, String> {
    let ok = is_plain_name(s) && s != "." && s != "..";
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid server name {s:?}: letters, digits, '.', '_', '-'"
        ))
    }
}

/// 1–253 of letters, digits, `.`, `_`, `-`: what a server or recipe name may be made of.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Refuse a recipe name that is not one path component: it names a directory of the
/// abra tree (`recipes/<recipe>`), and abra would read `-x` as an option.
pub fn parse_recipe(s: &str) -> Result<String, String> {
    let ok = is_plain_name(s) && !s.starts_with(['-', '.']);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid recipe name {s:?}: letters, digits, '.', '_', '-', not first '.' or '-'"
        ))
    }
}

/// Refuse a version that abra would read as an option.
pub fn parse_version(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with('-') {
        Err(format!("invalid version {s:?}"))
    } else {
        Ok(s.to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AbraError {
    #[error("abra is unavailable: `{command}` could not be started: {reason}")]
    Unavailable { command: String, reason: String },
    #[error("`{command}` failed with {status}; its last lines:\n{tail}")]
    Failed {
        command: String,
        status: String,
        tail: String,
    },
    /// Hung, and killed when its bound ran out (or not started: no time was left).
    #[error("`{command}` {reason}; its last lines:\n{tail}")]
    Unfinished {
        command: String,
        reason: RunError,
        tail: String,
    },
}

/// abra, as named by `CCCI_ABRA` (else `abra` on `PATH`).
pub struct Abra {
    program: OsString,
    /// The tree abra is told to use (`ABRA_DIR`), when set.
    tree: Option<PathBuf>,
    bound: Bound,
}

/// How many of abra's last lines a failure quotes.
const TAIL: usize = 20;

impl Abra {
    pub fn from_env() -> Abra {
        Abra {
            program: non_empty(EnvVars::CCCI_ABRA).unwrap_or_else(|| "abra".into()),
            tree: None,
            bound: Bound::default(),
        }
    }

    /// Run abra with `ABRA_DIR=tree`: the tree ccci reads the `.env` and recipe from.
    pub fn in_tree(self, tree: &Path) -> Abra {
        Abra {
            tree: Some(tree.to_owned()),
            ..self
        }
    }

    /// The same abra, every call ending by `deadline` ([`crate::child::bounded`]).
    pub fn until(self, deadline: Instant) -> Abra {
        Abra {
            bound: Bound::Until(deadline),
            ..self
        }
    }

    /// Make sure abra can be found before anything is done (a deploy counted and then
    /// not made would fail the run's count check for the wrong reason).
    pub fn check(&self) -> Result<(), AbraError> {
        use std::os::unix::fs::PermissionsExt;
        let runnable = |p: &Path| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        let program = Path::new(&self.program);
        let found = if self.program.to_string_lossy().contains('/') {
            runnable(program)
        } else {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path).any(|dir| runnable(&dir.join(program)))
        };
        if found {
            return Ok(());
        }
        Err(AbraError::Unavailable {
            command: self.program.to_string_lossy().into_owned(),
            reason: "not found (set CCCI_ABRA)".into(),
        })
    }

    /// Run `abra args...`, passing its output through to our stderr line by line as it
    /// comes (an operator watches a deploy live), keeping the last lines for the error.
    /// Killed when its bound runs out.
    pub fn run(&self, args: &[String]) -> Result<(), AbraError> {
        let command = format!("{} {}", self.program.to_string_lossy(), args.join(" "));
        let unavailable = |reason: String| AbraError::Unavailable {
            command: command.clone(),
            reason,
        };
        let (reader, writer) = io::pipe().map_err(|e| unavailable(e.to_string()))?;
        let mut cmd = Command::new(&self.program);
        if let Some(tree) = &self.tree {
            cmd.env(EnvVars::ABRA_DIR, tree);
        }
        // `cmd` holds the pipe's write ends until it is dropped: it goes into the spawn,
        // so the read below sees end-of-file when abra is done.
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(|e| unavailable(e.to_string()))?)
            .stderr(writer);
        let tail = Arc::new(Mutex::new(std::collections::VecDeque::with_capacity(TAIL)));
        let lines = Arc::clone(&tail);
        let ended = bounded::spawn(cmd, self.bound).and_then(|mut running| {
            running.read(Some(reader), move |reader| {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    crate::cli::say_line(&format!("  abra: {line}"));
                    let mut tail = lines.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })?;
            running.wait()
        });
        let tail = tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| format!("  > {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        let status = match ended {
            Ok(status) => status,
            Err(RunError::Start(e)) => return Err(unavailable(e.to_string())),
            Err(reason) => {
                return Err(AbraError::Unfinished {
                    command,
                    reason,
                    tail,
                });
            }
        };
        if status.success() {
            return Ok(());
        }
        Err(AbraError::Failed {
            command,
            status: match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("status {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => status.to_string(),
            },
            tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_are_counted_per_domain() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("deploys");
        let (a, b) = (
            Domain::parse("a.b").unwrap(),
            Domain::parse("a.b.c").unwrap(),
        );
        assert_eq!(deploys(&file, None).unwrap(), 0);
        record_deploy(&file, &a).unwrap();
        record_deploy(&file, &b).unwrap();
        record_deploy(&file, &a).unwrap();
        assert_eq!(deploys(&file, None).unwrap(), 3);
        assert_eq!(deploys(&file, Some(&a)).unwrap(), 2);
        assert_eq!(deploys(&file, Some(&b)).unwrap(), 1);
        let line: serde_json::Value =
            serde_json::from_str(fs::read_to_string(&file).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(line["domain"], "a.b");
        assert_eq!(line["pid"], std::process::id());
    }

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
        for bad in ["1A=x", "A=x\nB=y", "A=x\ry"] {
            assert!(parse_set(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_server("../x").is_err()
                && parse_server("/etc").is_err()
                && parse_server("").is_err()
        );
        assert_eq!(parse_server("default").unwrap(), "default");
        assert_eq!(parse_recipe("two-services").unwrap(), "two-services");
        for bad in ["", ".", "..", "../x", "a/b", "-x", ".hidden"] {
            assert!(parse_recipe(bad).is_err(), "{bad:?}");
        }
        assert!(parse_version("--chaos").is_err());
        assert!(parse_set("=x").is_err());
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("A B=x").is_err());
    }
}
