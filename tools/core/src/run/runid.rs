//! Run ids: the key of a run's directory and the `run` shown in lock holder metadata.
//!
//! 1–64 characters of `[A-Za-z0-9._-]`, not `.` or `..`, so an id is always one safe path
//! component and one unquoted word in a log line.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunId(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id {quoted}: {reason}")]
pub struct RunIdError {
    quoted: String,
    reason: &'static str,
}

impl RunId {
    pub fn parse(input: &str) -> Result<RunId, RunIdError> {
        let fail = |reason| RunIdError {
            quoted: format!("{input:?}"),
            reason,
        };
        if input.is_empty() || input.len() > 64 {
            return Err(fail("must be 1 to 64 characters"));
        }
        if input == "." || input == ".." {
            return Err(fail("'.' and '..' are not run ids"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(fail("only letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(RunId(input.to_owned()))
    }

    pub fn parse_os(input: &std::ffi::OsStr) -> Result<RunId, RunIdError> {
        RunId::parse(input.to_str().ok_or_else(|| RunIdError {
            quoted: format!("{input:?}"),
            reason: "not valid UTF-8",
        })?)
    }

    /// The run id a tool uses: `given` (from `--run-id` or, through clap's `env =`,
    /// `CCCI_RUN_ID`), else Drone's `DRONE_BUILD_NUMBER` (empty counts as unset); `None`
    /// when there is none. clap binds one variable to an option, so the fallback is here.
    pub fn or_drone_build(given: Option<std::ffi::OsString>) -> Result<Option<RunId>, RunIdError> {
        use crate::env::{EnvVars, non_empty};
        given
            .or_else(|| non_empty(EnvVars::DRONE_BUILD_NUMBER))
            .map(|id| RunId::parse_os(&id))
            .transpose()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        for ok in ["279", "manual-1760000000-4242", "a.b_c-D", &"x".repeat(64)] {
            assert_eq!(RunId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "a\nb", &"x".repeat(65)] {
            let err = RunId::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
