//! The pieces of `ccci-deploy up` that are not the swarm's: the deploy counter, the
//! app's `.env` file, and running abra.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

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
/// line that is not a record is counted only when no domain is asked for.
pub fn deploys(count_file: &Path, domain: Option<&Domain>) -> io::Result<usize> {
    let text = match fs::read_to_string(count_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| match domain {
            None => true,
            Some(d) => {
                serde_json::from_str::<DeployRecord>(l).is_ok_and(|r| r.domain == d.as_str())
            }
        })
        .count())
}

/// `$ABRA_DIR`, else abra's own default `$HOME/.abra`.
pub fn abra_dir() -> Option<PathBuf> {
    non_empty(EnvVars::ABRA_DIR)
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".abra")))
}

/// `<abra dir>/servers/<server>/<domain>.env`.
pub fn env_file(abra_dir: &Path, server: &str, domain: &Domain) -> PathBuf {
    abra_dir
        .join("servers")
        .join(server)
        .join(format!("{domain}.env"))
}

/// Set `KEY=VALUE` in an env file: replace the line that sets KEY, or append one.
/// Written to a temporary file and renamed over, so a reader never sees half a file.
pub fn apply_sets(env: &Path, sets: &[(String, String)]) -> io::Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = fs::read_to_string(env)?
        .lines()
        .map(str::to_owned)
        .collect();
    for (key, value) in sets {
        let line = format!("{key}={value}");
        let sets_key = |l: &String| l.split_once('=').is_some_and(|(k, _)| k.trim() == key);
        match lines.iter_mut().find(|l| sets_key(l)) {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    let tmp = env.with_extension("env.ccci-tmp");
    fs::write(&tmp, lines.join("\n") + "\n")?;
    fs::rename(&tmp, env)
}

/// Parse `--set KEY=VALUE`.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v))
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!(
            "expected KEY=VALUE with KEY of letters, digits and _, got {s:?}"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AbraError {
    #[error("abra is unavailable: `{command}` could not be started: {source}")]
    Unavailable { command: String, source: io::Error },
    #[error("`{command}` failed with {status}; its last lines:\n{tail}")]
    Failed {
        command: String,
        status: String,
        tail: String,
    },
}

/// abra, as named by `CCCI_ABRA` (else `abra` on `PATH`).
pub struct Abra {
    program: OsString,
}

/// How many of abra's last lines a failure quotes.
const TAIL: usize = 20;

impl Abra {
    pub fn from_env() -> Abra {
        Abra {
            program: non_empty(EnvVars::CCCI_ABRA).unwrap_or_else(|| "abra".into()),
        }
    }

    /// Run `abra args...`, passing its output through to our stderr line by line as it
    /// comes (an operator watches a deploy live), keeping the last lines for the error.
    pub fn run(&self, args: &[String]) -> Result<(), AbraError> {
        let command = format!("{} {}", self.program.to_string_lossy(), args.join(" "));
        let (reader, writer) = io::pipe().map_err(|source| AbraError::Unavailable {
            command: command.clone(),
            source,
        })?;
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                writer
                    .try_clone()
                    .map_err(|source| AbraError::Unavailable {
                        command: command.clone(),
                        source,
                    })?,
            )
            .stderr(writer)
            .spawn()
            .map_err(|source| AbraError::Unavailable {
                command: command.clone(),
                source,
            })?;
        let mut tail = std::collections::VecDeque::with_capacity(TAIL);
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            crate::cli::say_line(&format!("  abra: {line}"));
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let status = child.wait().map_err(|source| AbraError::Unavailable {
            command: command.clone(),
            source,
        })?;
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
            tail: tail
                .iter()
                .map(|l| format!("  > {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
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
        assert!(parse_set("=x").is_err());
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("A B=x").is_err());
    }
}
