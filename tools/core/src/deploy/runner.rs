//! Running abra: as `CCCI_ABRA` names it, with the abra tree it is told to use, each call
//! bounded, its output passed through and its last lines kept for a failure.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::child::bounded::{self, Bound, RunError};
use crate::env::{EnvVars, non_empty};

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
