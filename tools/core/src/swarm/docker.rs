//! The docker CLI: the one place ccci runs it, and the source of truth for what exists.
//!
//! Commands are argv vectors (never `sh -c`), and output is read with
//! `--format '{{json .}}'`, one JSON document per line, parsed with serde_json — never by
//! splitting columns. "The daemon cannot be reached" is told apart from every other
//! failure, because a tool that cannot see the swarm must stop (69) rather than guess.
//!
//! Every call is bounded ([`crate::child::bounded`]): a docker that hangs is killed when what
//! is left of the tool's `--timeout` runs out, and reported naming the command.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::child::bounded::{self, Bound, RunError};
use crate::env::{EnvVars, non_empty};

/// How docker says it cannot reach its daemon (or may not: a socket we lack permission
/// for is as unreachable as a missing one).
const UNREACHABLE: [&str; 6] = [
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
    "permission denied while trying to connect to the Docker daemon",
    "failed to connect to the docker API",
    "context not found",
];

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker is unavailable: `{command}` {reason}")]
    Unavailable { command: String, reason: String },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("cannot read the output of `{command}`: {reason}")]
    Output { command: String, reason: String },
    /// Hung, and killed when its bound ran out (or not started: no time was left).
    #[error("`{command}` {reason}")]
    Unfinished { command: String, reason: RunError },
}

impl DockerError {
    /// The daemon (or the executable) is not there at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DockerError::Unavailable { .. })
    }

    /// The failure's stderr, to recognise "in use", "not found" and the like.
    pub fn stderr(&self) -> &str {
        match self {
            DockerError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Docker {
    program: OsString,
    bound: Bound,
}

impl Docker {
    /// The docker named by `CCCI_DOCKER`, else `docker` on `PATH`; each call bounded by
    /// [`bounded::DEFAULT`].
    pub fn from_env() -> Docker {
        Docker {
            program: non_empty(EnvVars::CCCI_DOCKER).unwrap_or_else(|| "docker".into()),
            bound: Bound::default(),
        }
    }

    /// The same docker, its calls bounded by `bound`.
    pub fn bounded(&self, bound: Bound) -> Docker {
        Docker {
            program: self.program.clone(),
            bound,
        }
    }

    /// The same docker, every call ending by `deadline` (see [`bounded::SLACK`]).
    pub fn until(&self, deadline: Instant) -> Docker {
        self.bounded(Bound::Until(deadline))
    }

    /// Run `docker args...`; its stdout on success.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, DockerError> {
        let command = self.describe(args);
        let (status, stdout, stderr) = self.output(args).map_err(|reason| match reason {
            RunError::Start(e) => DockerError::Unavailable {
                command: command.clone(),
                reason: format!("could not be started: {e}"),
            },
            reason => DockerError::Unfinished {
                command: command.clone(),
                reason,
            },
        })?;
        let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        if UNREACHABLE.iter().any(|m| stderr.contains(m)) {
            return Err(DockerError::Unavailable {
                command,
                reason: format!("cannot reach the daemon: {stderr}"),
            });
        }
        Err(DockerError::Failed { command, stderr })
    }

    /// Run a listing with `--format '{{json .}}'` and parse each line.
    pub fn json_lines<T: DeserializeOwned, S: AsRef<OsStr>>(
        &self,
        args: &[S],
    ) -> Result<Vec<T>, DockerError> {
        self.json_lines_as(args, "{{json .}}")
    }

    /// Run a listing with a `--format` template that writes one JSON document per line.
    pub fn json_lines_as<T: DeserializeOwned, S: AsRef<OsStr>>(
        &self,
        args: &[S],
        format: &str,
    ) -> Result<Vec<T>, DockerError> {
        let mut full: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        full.extend(["--format".into(), format.into()]);
        let out = self.run(&full)?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| DockerError::Output {
                    command: self.describe(&full),
                    reason: format!("{e} in {line:?}"),
                })
            })
            .collect()
    }

    /// Make sure the daemon answers, before a tool decides anything from its silence.
    pub fn ping(&self) -> Result<(), DockerError> {
        self.run(&["version", "--format", "{{.Server.Version}}"])
            .map(drop)
    }

    /// Run it within its bound: status, stdout, stderr.
    fn output<S: AsRef<OsStr>>(
        &self,
        args: &[S],
    ) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), RunError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let mut running = bounded::spawn(cmd, self.bound)?;
        let pipe = running.child().stdout.take();
        running.read(pipe, bounded::collect(Arc::clone(&stdout)))?;
        let pipe = running.child().stderr.take();
        running.read(pipe, bounded::collect(Arc::clone(&stderr)))?;
        let status = running.wait()?;
        let take = |buf: Arc<Mutex<Vec<u8>>>| {
            std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()))
        };
        Ok((status, take(stdout), take(stderr)))
    }

    fn describe<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        words.extend(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_docker_is_unavailable() {
        let docker = Docker {
            program: "/nonexistent/docker".into(),
            bound: Bound::default(),
        };
        let err = docker.run(&["info"]).unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/docker info"),
            "{err}"
        );
    }

    #[test]
    fn a_hung_docker_is_killed_and_named() {
        let docker = Docker {
            program: "sh".into(),
            bound: Bound::Each(std::time::Duration::from_secs(1)),
        };
        let err = docker.run(&["-c", "sleep 100"]).unwrap_err();
        assert!(!err.is_unavailable(), "{err}");
        assert_eq!(
            err.to_string(),
            "`sh -c sleep 100` did not finish within 1s — killed"
        );
    }
}
