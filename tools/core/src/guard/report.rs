//! The guard's JSON exit report (`--report FILE`), version 1.
//!
//! Written after everything is reaped, atomically: a temp file in the same directory,
//! then `rename(2)`, which replaces the name in one step on the same filesystem — a
//! reader sees the previous report or the whole new one, never half of it.

use std::path::Path;

use crate::child::Ended;
use serde::Serialize;

use crate::child::{signal_name, signo_name};
use crate::guard::ending::{Cause, Ending};

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub command: Vec<String>,
    pub pid: i32,
    pub started_at: String,
    pub duration_ms: u64,
    pub outcome: &'static str,
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub exit_status: i32,
    /// 0: no deadline.
    pub deadline_ms: u64,
    pub grace_ms: u64,
    pub termination: Option<TerminationReport>,
    pub leftovers: Vec<LeftoverReport>,
}

#[derive(Debug, Serialize)]
pub struct TerminationReport {
    pub cause: &'static str,
    pub signal: String,
    pub at_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct LeftoverReport {
    pub pid: i32,
    pub comm: String,
    pub signal: &'static str,
}

impl Report {
    pub fn new(
        command: &[std::ffi::OsString],
        ending: &Ending,
        exit_status: i32,
        deadline: Option<std::time::Duration>,
        grace: std::time::Duration,
    ) -> Report {
        let (code, signal) = match ending.status {
            Ended::Exited(code) => (Some(code), None),
            Ended::Signaled(signo) => (None, Some(signo_name(signo))),
        };
        Report {
            version: 1,
            command: command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            pid: ending.pid.as_raw(),
            started_at: ending.started_at.clone(),
            duration_ms: ending.ran_for.as_millis() as u64,
            outcome: ending.outcome(),
            code,
            signal,
            exit_status,
            deadline_ms: deadline.map_or(0, |d| d.as_millis() as u64),
            grace_ms: grace.as_millis() as u64,
            termination: ending.termination.map(|t| TerminationReport {
                cause: match t.cause {
                    Cause::Deadline => "deadline",
                    Cause::Signal => "signal",
                },
                signal: t.signal.name(),
                at_ms: t.at.as_millis() as u64,
            }),
            leftovers: ending
                .leftovers
                .iter()
                .map(|l| LeftoverReport {
                    pid: l.pid,
                    comm: l.comm.clone(),
                    signal: signal_name(l.signal),
                })
                .collect(),
        }
    }

    /// Write to `path` atomically (see [`crate::files::atomic::write`]), readable by all.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec(self)?;
        json.push(b'\n');
        crate::files::atomic::write(path, &json, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::Leftover;
    use crate::guard::ending::Termination;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;
    use std::fs;
    use std::time::Duration;

    fn ending() -> Ending {
        Ending {
            pid: Pid::from_raw(4242),
            started_at: "2026-06-10T04:04:00.123Z".into(),
            ran_for: Duration::from_millis(192_034),
            status: Ended::Signaled(Signal::SIGTERM as i32),
            termination: Some(Termination {
                cause: Cause::Deadline,
                signal: Signal::SIGTERM.into(),
                at: Duration::from_secs(3600),
            }),
            killed: false,
            leftovers: vec![Leftover {
                pid: 4301,
                comm: "ssh".into(),
                signal: Signal::SIGTERM,
            }],
        }
    }

    #[test]
    fn serializes_the_documented_schema() {
        let e = ending();
        let r = Report::new(
            &["sh".into(), "-c".into(), "x".into()],
            &e,
            e.exit_status(false),
            Some(Duration::from_secs(3600)),
            Duration::from_secs(300),
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version":1,"command":["sh","-c","x"],"pid":4242,
            "started_at":"2026-06-10T04:04:00.123Z","duration_ms":192034,
            "outcome":"deadline","code":null,"signal":"TERM","exit_status":124,
            "deadline_ms":3600000,"grace_ms":300000,
            "termination":{"cause":"deadline","signal":"TERM","at_ms":3600000},
            "leftovers":[{"pid":4301,"comm":"ssh","signal":"TERM"}]})
        );
        assert_eq!(e.exit_status(true), 143);
    }

    #[test]
    fn writes_atomically_leaving_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        fs::write(&path, "old").unwrap();
        let e = ending();
        Report::new(&["true".into()], &e, 124, None, Duration::ZERO)
            .write_to(&path)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["deadline_ms"], 0);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
