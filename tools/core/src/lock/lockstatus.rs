//! Probing app locks without taking them: `ccci-lock --status` and the janitor's dry run.
//!
//! A probe opens the lockfile read-only (never creating it), tries `LOCK_SH|LOCK_NB` and
//! releases at once by closing. A shared probe never blocks another probe, and a run's
//! exclusive try treats a momentary shared holder as "not held" (see `applock`), so a
//! probe can never make a run think the domain is busy.

use std::time::Duration;

use serde::Serialize;

use crate::domain::Domain;
use crate::lock::applock::{self, LockError, Probe};
use crate::lock::holder::Holder;
use crate::lock::lockdir::LockDir;
use crate::lock::proclocks::{LockTable, OpenBy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    Held,
    Free,
    /// The lockfile is not one the protocol would use (symlink, foreign owner, ...).
    Refused,
}

#[derive(Debug, Serialize)]
pub struct LockReport {
    pub domain: String,
    pub lockfile: String,
    pub state: LockState,
    /// Whether the lockfile exists at all (a named domain may have none: free).
    pub exists: bool,
    pub holder: Option<Holder>,
    /// Whether the holder's pid is alive; `null` when not held or not knowable here.
    pub holder_alive: Option<bool>,
    /// Seconds since the holder took the lock, from its metadata.
    pub held_for_s: Option<u64>,
    pub problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: u32,
    pub lock_dir: String,
    pub locks: Vec<LockReport>,
}

/// Who holds which domain through a lockfile removed by hand (read once for all the
/// domains of a report), or why that cannot be told.
type Unlinked = Result<Vec<(Domain, OpenBy)>, String>;

/// Probe one domain's lock: its lockfile, then — when that is free or absent — whether a
/// run holds the domain through one removed by hand (a run that starts now would wait for
/// it: `--status` says so too).
fn probe(dir: &LockDir, domain: &Domain, unlinked: &Unlinked) -> LockReport {
    let mut report = probe_lockfile(dir, domain);
    if report.state != LockState::Free {
        return report;
    }
    match unlinked {
        Err(why) => {
            report.state = LockState::Refused;
            report.problem = Some(format!(
                "cannot tell whether a run holds it through a lockfile removed by hand: {why}"
            ));
        }
        Ok(unlinked) => {
            let holders = crate::lock::lockdir::holders_of(unlinked, domain);
            if let Some(first) = holders.first() {
                report.state = LockState::Held;
                report.holder = Some(Holder {
                    version: 1,
                    pid: Some(first.pid),
                    ..Holder::default()
                });
                report.holder_alive = Some(true);
                report.problem = Some(format!(
                    "held by {} through a lockfile that was removed by hand",
                    crate::lock::proclocks::describe(&holders)
                ));
            }
        }
    }
    report
}

/// Probe one domain's lockfile.
fn probe_lockfile(dir: &LockDir, domain: &Domain) -> LockReport {
    let path = dir.lockfile(domain);
    let mut report = LockReport {
        domain: domain.to_string(),
        lockfile: path.display().to_string(),
        state: LockState::Free,
        exists: false,
        holder: None,
        holder_alive: None,
        held_for_s: None,
        problem: None,
    };
    match applock::probe(&path) {
        Ok(Probe::Absent) => {}
        Ok(Probe::Free) => report.exists = true,
        Ok(Probe::Held(file)) => {
            report.exists = true;
            let holder = applock::holder_of(&file);
            report.state = LockState::Held;
            report.holder_alive = holder.as_ref().and_then(Holder::alive);
            report.held_for_s = holder
                .as_ref()
                .and_then(Holder::age)
                .as_ref()
                .map(Duration::as_secs);
            report.holder = holder;
        }
        Err(LockError::Flock { source, .. }) => {
            report.exists = true;
            report.state = LockState::Refused;
            report.problem = Some(format!("cannot probe: {source}"));
        }
        Err(e) => {
            report.exists = !matches!(e, LockError::Open { .. });
            report.state = LockState::Refused;
            report.problem = Some(e.to_string());
        }
    }
    report
}

/// Probe the named domains, or every lockfile in the directory when none is named.
pub fn status(dir: &LockDir, domains: &[Domain]) -> std::io::Result<StatusReport> {
    let unlinked: Unlinked = LockTable::load()
        .and_then(|t| dir.held_unlinked(&t))
        .map_err(|e| e.to_string());
    let listed;
    let domains = if domains.is_empty() && dir.check_existing().unwrap_or(false) {
        let mut all = dir.domains()?;
        // Held through a removed lockfile: no file lists it, but it is held.
        all.extend(unlinked.iter().flatten().map(|(d, _)| d.clone()));
        all.sort();
        all.dedup();
        listed = all;
        &listed
    } else {
        domains
    };
    Ok(StatusReport {
        version: 1,
        lock_dir: dir.path().display().to_string(),
        locks: domains.iter().map(|d| probe(dir, d, &unlinked)).collect(),
    })
}

impl StatusReport {
    /// An aligned table for people; scripts use `--json`.
    pub fn render_text(&self) -> String {
        let mut rows =
            vec![["DOMAIN", "STATE", "PID", "ALIVE", "RUN", "HELD", "TOOL"].map(String::from)];
        for lock in &self.locks {
            let h = lock.holder.as_ref();
            let unknown = || "?".to_owned();
            let dash = || "-".to_owned();
            let held = lock.state == LockState::Held;
            let or_dash = |v: Option<String>| {
                if held {
                    v.unwrap_or_else(unknown)
                } else {
                    dash()
                }
            };
            rows.push([
                lock.domain.clone(),
                match lock.state {
                    LockState::Held => "held",
                    LockState::Free => "free",
                    LockState::Refused => "refused",
                }
                .to_owned(),
                or_dash(h.and_then(|h| h.pid).map(|p| p.to_string())),
                or_dash(
                    lock.holder_alive
                        .map(|a| if a { "yes" } else { "no" }.to_owned()),
                ),
                or_dash(h.and_then(|h| h.run_id.clone())),
                or_dash(
                    lock.held_for_s
                        .map(|s| crate::duration::format(Duration::from_secs(s))),
                ),
                or_dash(h.and_then(|h| h.tool.clone())),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        for lock in self.locks.iter().filter(|l| l.problem.is_some()) {
            out.push_str(&format!(
                "{}: {}\n",
                lock.domain,
                lock.problem.as_deref().unwrap_or_default()
            ));
        }
        out
    }
}
