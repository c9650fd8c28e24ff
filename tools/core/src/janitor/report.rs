//! What a janitor pass reports: a line per domain, a summary line, a JSON document, and
//! Prometheus textfile metrics (node_exporter's textfile collector).

use std::io;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::deploy::teardown::Removed;
use crate::domain::Domain;
use crate::duration;
use crate::lock::holder::{Holder, pid_and_run};
use crate::lock::proclocks::{OpenBy, Untraced};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reaped,
    Tidied,
    Left,
    Skipped(String),
    WouldReap,
    WouldTidy,
    Error(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Reaped => "reaped",
            Outcome::Tidied => "tidied",
            Outcome::Left => "left",
            Outcome::Skipped(_) => "skipped",
            Outcome::WouldReap => "would-reap",
            Outcome::WouldTidy => "would-tidy",
            Outcome::Error(_) => "error",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DomainReport {
    pub domain: Domain,
    pub outcome: Outcome,
    pub stale: bool,
    pub holder: Option<Holder>,
    pub held_for: Option<Duration>,
    /// For a stale lock: the processes that have the lockfile open.
    pub open_by: Vec<OpenBy>,
    /// The lockfile was unlinked while held (outside the protocol); `open_by` holds it.
    pub lockfile_unlinked: bool,
    /// Left because flocks on the lock dir's device could not be traced: it might be
    /// this domain's live run.
    pub untraced: Vec<Untraced>,
    /// Held through the old layer's lockfile, by one of its runs (the host is switching).
    pub old_layer: bool,
    pub removed: Option<Removed>,
}

impl DomainReport {
    pub fn new(domain: &Domain) -> DomainReport {
        DomainReport {
            domain: domain.clone(),
            outcome: Outcome::Left,
            stale: false,
            holder: None,
            held_for: None,
            open_by: Vec::new(),
            lockfile_unlinked: false,
            untraced: Vec::new(),
            old_layer: false,
            removed: None,
        }
    }

    /// A run holds `domain` through a lockfile that was unlinked: left, and warned about,
    /// since a run that starts on the domain now would not wait for it.
    pub fn held_unlinked(domain: &Domain, holders: Vec<OpenBy>) -> DomainReport {
        DomainReport {
            stale: true,
            open_by: holders,
            lockfile_unlinked: true,
            ..DomainReport::new(domain)
        }
    }

    /// The line an operator reads, `reaped D (removed 2 services, ...)`.
    pub fn line(&self) -> String {
        let d = &self.domain;
        match &self.outcome {
            Outcome::Reaped => format!(
                "reaped {d} (removed {})",
                self.removed.unwrap_or_default().describe()
            ),
            Outcome::Tidied => format!("tidied {d} (nothing deployed; removed its stale lockfile)"),
            Outcome::Left if self.lockfile_unlinked => {
                let holders: Vec<String> = self
                    .open_by
                    .iter()
                    .map(|o| format!("{} ({})", o.pid, o.comm))
                    .collect();
                format!(
                    "live run, leaving it: {d} — but its lockfile was unlinked while held, by {}: a run that starts on {d} now would not wait for it",
                    holders.join(", ")
                )
            }
            Outcome::Left if !self.untraced.is_empty() => {
                let locks: Vec<String> = self
                    .untraced
                    .iter()
                    .map(|u| {
                        let pids: Vec<String> = u.pids.iter().map(|p| p.to_string()).collect();
                        format!("inode {} by pid {}", u.ino, pids.join(","))
                    })
                    .collect();
                format!(
                    "cannot prove {d} free, leaving it: a flock on the lock dir's device ({}) is held by a process that no lockfile or descriptor in sight explains — it may be this domain's run",
                    locks.join("; ")
                )
            }
            Outcome::Left if self.stale => {
                let (pid, run) = pid_and_run(self.holder.as_ref());
                let held = self.held_for.map_or("?".into(), duration::format);
                let open: Vec<String> = self
                    .open_by
                    .iter()
                    .map(|o| format!("{} ({})", o.pid, o.comm))
                    .collect();
                let pid = if self.old_layer {
                    format!("{pid} (a run of the old layer, through its lockfile)")
                } else {
                    format!("{pid} (run {run})")
                };
                format!(
                    "possible leaked run: {d} held for {held} by pid {pid}; lockfile open in: {}",
                    if open.is_empty() {
                        "no process found".into()
                    } else {
                        open.join(", ")
                    }
                )
            }
            Outcome::Left if self.old_layer => {
                let (pid, _) = pid_and_run(self.holder.as_ref());
                format!(
                    "live run of the old layer, leaving it: {d} (pid {pid} holds its old lockfile)"
                )
            }
            Outcome::Left => format!("live run, leaving it: {d}"),
            Outcome::Skipped(why) => format!("skipped {d}: {why}"),
            Outcome::WouldReap => format!("would reap {d}"),
            Outcome::WouldTidy => format!("would tidy {d}"),
            Outcome::Error(e) => format!("error reaping {d}: {e}"),
        }
    }
}

#[derive(Serialize)]
struct DomainJson<'a> {
    domain: &'a str,
    result: &'static str,
    stale: bool,
    holder: Option<&'a Holder>,
    open_by: &'a [OpenBy],
    lockfile_unlinked: bool,
    untraced: &'a [Untraced],
    old_layer: bool,
    removed: Option<Removed>,
    error: Option<&'a str>,
}

/// The whole pass.
pub struct Report<'a> {
    pub started_at: String,
    pub duration: Duration,
    pub domains: &'a [DomainReport],
    pub ignored: usize,
    /// Flocks on the lock dir's device nothing in sight explains (nothing was reaped).
    pub untraced: usize,
}

impl Report<'_> {
    fn count(&self, name: &str) -> usize {
        self.domains
            .iter()
            .filter(|d| d.outcome.name() == name)
            .count()
    }

    pub fn stale(&self) -> usize {
        self.domains.iter().filter(|d| d.stale).count()
    }

    /// Something failed — or a lock nothing explains kept the pass from reaping: an
    /// operator must look (a timer's failed unit says so).
    pub fn failed(&self) -> bool {
        self.count("error") > 0 || self.domains.iter().any(|d| !d.untraced.is_empty())
    }

    /// `== janitor: 3 reaped, 1 tidied, 2 left (1 stale), 4 ignored, 0 errors in 2.1s ==`
    pub fn summary(&self) -> String {
        let would = if self
            .domains
            .iter()
            .any(|d| d.outcome.name().starts_with("would"))
        {
            format!(
                " (dry run: {} would be reaped, {} tidied)",
                self.count("would-reap"),
                self.count("would-tidy")
            )
        } else {
            String::new()
        };
        format!(
            "== janitor: {} reaped, {} tidied, {} left ({} stale), {} ignored, {} errors in {}{would} ==",
            self.count("reaped"),
            self.count("tidied"),
            self.count("left"),
            self.stale(),
            self.ignored,
            self.count("error"),
            duration::format(self.duration),
        )
    }

    pub fn json(&self) -> String {
        let domains: Vec<DomainJson<'_>> = self
            .domains
            .iter()
            .map(|d| DomainJson {
                domain: d.domain.as_str(),
                result: d.outcome.name(),
                stale: d.stale,
                holder: d.holder.as_ref(),
                open_by: &d.open_by,
                lockfile_unlinked: d.lockfile_unlinked,
                untraced: &d.untraced,
                old_layer: d.old_layer,
                removed: d.removed,
                error: match &d.outcome {
                    Outcome::Error(e) | Outcome::Skipped(e) => Some(e),
                    _ => None,
                },
            })
            .collect();
        serde_json::json!({
            "version": 1,
            "started_at": self.started_at,
            "duration_ms": self.duration.as_millis() as u64,
            "domains": domains,
            "ignored": self.ignored,
        })
        .to_string()
    }

    /// Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP ccci_janitor_domains Domains by result in the last janitor pass.\n\
             # TYPE ccci_janitor_domains gauge\n",
        );
        for result in [
            "reaped",
            "tidied",
            "left",
            "skipped",
            "would-reap",
            "would-tidy",
            "error",
        ] {
            out.push_str(&format!(
                "ccci_janitor_domains{{result=\"{result}\"}} {}\n",
                self.count(result)
            ));
        }
        out.push_str(&format!(
            "ccci_janitor_domains{{result=\"ignored\"}} {}\n",
            self.ignored
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        out.push_str(&format!(
            "# HELP ccci_janitor_last_run_timestamp_seconds When the last pass ended.\n\
             # TYPE ccci_janitor_last_run_timestamp_seconds gauge\n\
             ccci_janitor_last_run_timestamp_seconds {}\n\
             # HELP ccci_janitor_duration_seconds How long the last pass took.\n\
             # TYPE ccci_janitor_duration_seconds gauge\n\
             ccci_janitor_duration_seconds {:.3}\n\
             # HELP ccci_janitor_stale_locks Held app locks older than --stale-after.\n\
             # TYPE ccci_janitor_stale_locks gauge\n\
             ccci_janitor_stale_locks {}\n\
             # HELP ccci_janitor_untraced_locks Flocks on the lock dir's device that no process in sight explains; while any is there, nothing is reaped.\n\
             # TYPE ccci_janitor_untraced_locks gauge\n\
             ccci_janitor_untraced_locks {}\n",
            now.as_secs(),
            self.duration.as_secs_f64(),
            self.stale(),
            self.untraced
        ));
        out
    }
}

/// Write `content` to `path` atomically, so node_exporter never reads half a file.
pub fn write_atomically(path: &Path, content: &str) -> io::Result<()> {
    crate::files::atomic::write(path, content.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> DomainReport {
        DomainReport {
            outcome,
            ..DomainReport::new(&Domain::parse("ab-0a1b2c.ci.example.org").unwrap())
        }
    }

    #[test]
    fn summary_json_and_metrics_agree() {
        let mut stale = report(Outcome::Left);
        stale.stale = true;
        let domains = [
            report(Outcome::Reaped),
            report(Outcome::Tidied),
            stale,
            report(Outcome::Error("x".into())),
        ];
        let r = Report {
            started_at: "2026-06-10T05:04:02Z".into(),
            duration: Duration::from_millis(2100),
            domains: &domains,
            ignored: 4,
            untraced: 0,
        };
        assert_eq!(
            r.summary(),
            "== janitor: 1 reaped, 1 tidied, 1 left (1 stale), 4 ignored, 1 errors in 2.1s =="
        );
        assert!(r.failed());
        let doc: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["domains"][3]["result"], "error");
        assert_eq!(doc["domains"][3]["error"], "x");
        assert_eq!(doc["ignored"], 4);
        let m = r.metrics();
        assert!(
            m.contains("ccci_janitor_domains{result=\"reaped\"} 1\n"),
            "{m}"
        );
        assert!(m.contains("ccci_janitor_stale_locks 1\n"), "{m}");
        assert!(m.contains("ccci_janitor_duration_seconds 2.100\n"), "{m}");
    }

    #[test]
    fn metrics_are_written_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ccci.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
