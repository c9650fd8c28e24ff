//! One janitor pass: find the apps crashed runs left, and reap each one *while holding
//! its app lock*, so a run that starts on that domain meanwhile waits until the reap is
//! done; never touch a live run or an app that is not an ephemeral run app
//! (`docs/janitor.md`).
//!
//! Discovery costs a fixed number of docker calls (one listing per resource type). A
//! domain is a candidate when a lockfile, a swarm label or a canonical `.env` names it;
//! it is eligible only if it matches the allowlist and not the denylist — an ineligible
//! one is never probed, never gets a lockfile, and nothing of it is touched.
//!
//! An unlabelled secret or config alone does not make a candidate: its name
//! `<stack>_<name>_<version>` cannot be split safely when names contain `_`, and
//! guessing a stack could claim a live app's secret under the wrong lock. It is reaped
//! with its app (longest-prefix rule), whose `.env` outlives it: teardown removes the
//! `.env` last, and `abra app new` writes it before any secret exists.
//!
//! [`report`] is what a pass says: lines, JSON, metrics.

pub mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::deploy::teardown::Teardown;
use crate::domain::Domain;
use crate::janitor::report::{DomainReport, Outcome};
use crate::lock::applock::{self, LockError, Verified, Wait};
use crate::lock::holder::Holder;
use crate::lock::legacy::{LegacyLocks, Tried};
use crate::lock::lockdir::LockDir;
use crate::lock::proclocks::{LockTable, Untraced};
use crate::swarm::Inventory;
use crate::swarm::docker::{Docker, DockerError};

pub struct Janitor<'a> {
    pub docker: &'a Docker,
    pub lock_dir: LockDir,
    /// The canonical abra tree (its `servers/*/<domain>.env`).
    pub abra_dir: PathBuf,
    pub run_app_re: Regex,
    /// While the host switches from the old layer: its lockfiles, honoured too — a domain
    /// is live when either lock is held, and reaped only while both are held.
    pub legacy: LegacyLocks,
    pub protect_re: Regex,
    pub stale_after: Duration,
    pub dry_run: bool,
    /// For each reap: how long it may take, its docker calls included (a hung one is
    /// killed when it runs out), and how long containers may take to go and volumes to
    /// come free.
    pub timeout: Duration,
}

/// What a pass found: one report per eligible domain, how many were ignored, and how
/// many flocks on the lock dir's device could not be traced (nothing was reaped then).
pub struct Pass {
    pub domains: Vec<DomainReport>,
    pub ignored: usize,
    pub untraced: usize,
}

/// What a pass knows when it probes one domain.
struct Probe<'a> {
    inventory: &'a Inventory,
    known: &'a BTreeSet<String>,
    servers: &'a Path,
    locks: Option<&'a LockTable>,
    untraced: &'a [Untraced],
}

impl Janitor<'_> {
    pub fn eligible(&self, domain: &Domain) -> bool {
        self.run_app_re.is_match(domain.as_str()) && !self.protect_re.is_match(domain.as_str())
    }

    /// One pass. Docker unreachable is an error before anything is touched: a janitor
    /// that cannot see the swarm must not guess. (The inventory is the first thing asked
    /// of docker; `ccci-janitor` has pinged it already, before creating the lock dir.)
    pub fn pass(&self, on_domain: &mut dyn FnMut(&DomainReport)) -> Result<Pass, DockerError> {
        let inventory = Inventory::collect(self.docker)?;
        let servers = crate::abra::servers(&self.abra_dir);
        let lockfiles = self.lock_dir.domains().unwrap_or_default();
        let env_domains = crate::abra::env_domains(&servers);
        // Read once: asked about for every held lock (for people only: who holds it).
        let locks = LockTable::load();
        // Held through a lockfile someone unlinked: live runs no lockfile names any more.
        // When that cannot be told (the lock table unreadable), nothing is reaped.
        // A flock on the lock dir's device that no descriptor in sight explains may be any
        // domain's live run: then nothing is reaped (tidying a lockfile stays safe).
        let scan = match &locks {
            Ok(table) => self.lock_dir.held_unlinked_or_untraced(table),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
        .map_err(|e| e.to_string());
        let (unlinked, untraced) = match scan {
            Ok((unlinked, untraced)) => (Ok(unlinked), untraced),
            Err(e) => (Err(e), Vec::new()),
        };
        let mut candidates: BTreeSet<Domain> = lockfiles.iter().cloned().collect();
        candidates.extend(unlinked.iter().flatten().map(|(d, _)| d.clone()));
        candidates.extend(env_domains.iter().cloned());
        candidates.extend(
            inventory
                .labelled_stacks()
                .iter()
                .filter_map(|s| Domain::from_stack_name(s)),
        );
        // Every stack name known anywhere, for the longest-prefix rule of teardown.
        let known: BTreeSet<String> = candidates.iter().map(Domain::stack_name).collect();

        let mut pass = Pass {
            domains: Vec::new(),
            ignored: 0,
            untraced: untraced.len(),
        };
        for domain in &candidates {
            if !self.eligible(domain) {
                pass.ignored += 1;
                continue;
            }
            let unlinked = match &unlinked {
                Ok(unlinked) => unlinked,
                Err(e) => {
                    let mut report = DomainReport::new(domain);
                    report.outcome = Outcome::Error(cannot_tell(e));
                    on_domain(&report);
                    pass.domains.push(report);
                    continue;
                }
            };
            let holders = crate::lock::lockdir::holders_of(unlinked, domain);
            let report = if holders.is_empty() {
                let probe = Probe {
                    inventory: &inventory,
                    known: &known,
                    servers: &servers,
                    locks: locks.as_ref().ok(),
                    untraced: &untraced,
                };
                self.probe_and_act(domain, &probe)
            } else {
                // Its lock is free to take, but a run holds the old one: never reap it.
                DomainReport::held_unlinked(domain, holders)
            };
            on_domain(&report);
            pass.domains.push(report);
        }
        Ok(pass)
    }

    fn probe_and_act(&self, domain: &Domain, probe: &Probe<'_>) -> DomainReport {
        let Probe {
            inventory,
            known,
            servers,
            locks,
            untraced,
        } = *probe;
        let mut report = DomainReport::new(domain);
        let has_resources = !inventory.of(&domain.stack_name(), known).is_empty()
            || !crate::abra::env_files(servers, domain).is_empty();
        let path = self.lock_dir.lockfile(domain);
        if self.dry_run {
            report.outcome = match applock::probe(&path) {
                Err(e) => Outcome::Skipped(e.to_string()),
                Ok(applock::Probe::Held(f)) => {
                    self.left(&mut report, &f, &path, locks);
                    Outcome::Left
                }
                Ok(_) => match self.legacy.probe(domain) {
                    Err(e) => Outcome::Skipped(e.to_string()),
                    Ok(Some((applock::Probe::Held(f), old))) => {
                        self.left(&mut report, &f, &old, locks);
                        report.old_layer = true;
                        Outcome::Left
                    }
                    Ok(_) if has_resources && !untraced.is_empty() => {
                        report.untraced = untraced.to_vec();
                        Outcome::Left
                    }
                    Ok(_) if has_resources => Outcome::WouldReap,
                    Ok(_) => Outcome::WouldTidy,
                },
            };
            return report;
        }
        let file = match applock::acquire_verified(
            &path,
            Wait::No,
            Duration::MAX,
            &mut applock::warn_retired("ccci-janitor"),
        ) {
            Ok(Verified::Held { file, .. }) => file,
            Ok(Verified::Busy { file, .. }) => {
                self.left(&mut report, &file, &path, locks);
                report.outcome = Outcome::Left;
                return report;
            }
            Err(e @ (LockError::Symlink { .. } | LockError::Unsafe { .. })) => {
                report.outcome = Outcome::Skipped(e.to_string());
                return report;
            }
            Err(e) => {
                report.outcome = Outcome::Error(e.to_string());
                return report;
            }
        };
        let lock = applock::AppLock::from_verified(file, path, domain.clone());
        // Switching: a run of the old layer holds only its own lockfile. Ours first, then
        // that one, as every ccci run takes them.
        let legacy = match self.legacy.try_hold(domain) {
            Ok(None) => None,
            Ok(Some(Tried::Held(legacy))) => Some(legacy),
            Ok(Some(Tried::Busy(file, old))) => {
                // The lockfile our probe may have made goes: held and verified.
                let _ = lock.remove_lockfile();
                self.left(&mut report, &file, &old, locks);
                report.old_layer = true;
                report.outcome = Outcome::Left;
                return report;
            }
            Err(e) => {
                let _ = lock.remove_lockfile();
                report.outcome = Outcome::Error(format!("cannot probe the old layer's lock: {e}"));
                return report;
            }
        };
        // The pass looked for runs holding an unlinked lockfile when it started, and reaps
        // take long: a lockfile unlinked since would have us reap a live run. Look again.
        let holders = if has_resources {
            match LockTable::load().and_then(|t| self.lock_dir.held_unlinked_or_untraced(&t)) {
                // Untraced at the start of the pass or now: this one may be live.
                Ok((_, now)) if !untraced.is_empty() || !now.is_empty() => {
                    report.untraced = if now.is_empty() {
                        untraced.to_vec()
                    } else {
                        now
                    };
                    report.outcome = Outcome::Left;
                    return report;
                }
                Ok((holders, _)) => holders,
                Err(e) => {
                    // The lockfile our probe made goes; the domain waits for a pass that
                    // can tell.
                    let _ = lock.remove_lockfile();
                    report.outcome = Outcome::Error(cannot_tell(&e.to_string()));
                    return report;
                }
            }
        } else {
            Vec::new()
        };
        let holders = crate::lock::lockdir::holders_of(&holders, domain);
        if !holders.is_empty() {
            // The lockfile our probe made: held and verified, it goes as a tidy's would.
            let _ = lock.remove_lockfile();
            return DomainReport::held_unlinked(domain, holders);
        }
        report.outcome = if has_resources {
            // Held and verified: say who holds it, so a run that now blocks on this
            // domain for the length of the reap shows us. (A tidy takes no time.)
            let me =
                Holder::new_for_this_process(Some(domain.as_str()), None, "ccci-janitor", vec![]);
            let _ = lock.write_holder(&me);
            // Every docker call of the reap ends with its `--timeout`: a hung one is
            // killed, the domain is an error for the next pass, and the lock goes now.
            let docker = self.docker.until(Instant::now() + self.timeout);
            let teardown = Teardown {
                docker: &docker,
                domain,
                servers_dir: servers.to_owned(),
                known: known.clone(),
                lock_dir: Some(self.lock_dir.clone()),
                timeout: self.timeout,
            };
            match teardown.run_verified().map_err(|e| e.to_string()) {
                // Gone meanwhile (another janitor, a run's own `down`): nothing was reaped.
                Ok(removed) if removed.total() == 0 => Outcome::Tidied,
                Ok(removed) => {
                    report.removed = Some(removed);
                    Outcome::Reaped
                }
                // Keep the lockfile: the next pass will find the domain again.
                Err(e) => return with_error(report, e),
            }
        } else {
            Outcome::Tidied
        };
        // Still holding both, identity re-verified inside: unlink (the old layer's too, as
        // its own janitor does), then the locks go.
        if let Some(legacy) = legacy
            && let Err(e) = legacy.remove_lockfile()
        {
            return with_error(
                report,
                format!("cannot remove the old layer's lockfile: {e}"),
            );
        }
        if let Err(e) = lock.remove_lockfile() {
            return with_error(report, format!("cannot remove the lockfile: {e}"));
        }
        report
    }

    /// A held lock: a live run. Old enough, it is a possible leak: name who holds it.
    fn left(
        &self,
        report: &mut DomainReport,
        file: &std::fs::File,
        path: &Path,
        locks: Option<&LockTable>,
    ) {
        let holder = applock::holder_in(file, locks);
        let age = holder
            .as_ref()
            .and_then(Holder::age)
            .or_else(|| file.metadata().ok()?.modified().ok()?.elapsed().ok());
        report.stale = age.is_some_and(|a| a > self.stale_after);
        report.held_for = age;
        report.holder = holder;
        if report.stale {
            let me = std::process::id() as i32; // our own probe has it open too
            report.open_by = crate::lock::proclocks::processes_with_open(path)
                .into_iter()
                .filter(|o| o.pid != me)
                .collect();
        }
    }
}

fn with_error(mut report: DomainReport, error: String) -> DomainReport {
    report.outcome = Outcome::Error(error);
    report
}

/// Why a domain is left alone when the kernel's lock table cannot be read.
fn cannot_tell(why: &str) -> String {
    format!(
        "cannot tell whether a run holds it through a lockfile removed by hand ({why}) — left alone"
    )
}
