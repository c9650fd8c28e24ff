//! Waiting for a stack to converge: every service ready on two polls in a row
//! (`readiness`: its replicas and its update state), and its tasks stable (`tasks`:
//! running for the stability window, none failed within it); `report` is what
//! `ccci-deploy up` says while it waits and when the wait ends.
//!
//! Polling is with backoff (0.5 s, doubling, at most 5 s), never a fixed long sleep. A
//! crash-looping task is "running" between its restarts, so a look that says converged
//! must hold on two polls in a row, and the tasks' own history must say they are stable.

mod readiness;
mod report;
mod tasks;

use std::time::{Duration, Instant};

use crate::swarm::docker::{Docker, DockerError};
use crate::swarm::{self, Service};

pub use readiness::{Replicas, parse_replicas, ready, settled, short};
pub use report::{say_outcome, say_progress};
use tasks::check_tasks;
pub use tasks::{STABLE_FOR, Task, TaskCheck, TaskStatus, judge, last_task_error};

const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(5);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub enum Outcome {
    Converged {
        services: usize,
        after: Duration,
    },
    TimedOut {
        services: Vec<Service>,
        /// Why the tasks were not stable at the last look that found every service
        /// ready (empty when there was none).
        unsettled: Vec<String>,
        after: Duration,
    },
}

/// What a progress report knows: the services not ready yet and how long it has been.
pub struct Progress<'a> {
    pub services: &'a [Service],
    pub elapsed: Duration,
}

/// Poll the stack until it converges or `timeout` runs out, reporting every 15 s. It
/// converges when every service is ready on two polls in a row and its tasks are stable
/// for `stable_for` ([`judge`]).
pub fn wait(
    docker: &Docker,
    stack: &str,
    timeout: Duration,
    stable_for: Duration,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Outcome, DockerError> {
    let start = Instant::now();
    let mut pause = FIRST_POLL;
    let mut next_report = start + PROGRESS_EVERY;
    let mut seen_ready = false;
    let mut unsettled = Vec::new();
    loop {
        let services = swarm::services(docker, Some(stack))?;
        // No service at all is not "nothing left to wait for": the deploy made none yet.
        let all_ready = !services.is_empty() && services.iter().all(ready);
        // Replicas up is not enough: a task that crashes a few seconds after it starts
        // reads 1/1 until it does. Only the tasks' own history tells.
        let mut settles_in = Duration::ZERO;
        if all_ready {
            let check = check_tasks(docker, &services, stable_for)?;
            // Twice in a row: a crash-looping task caught in its instant of "running"
            // must not pass for a converged service.
            if seen_ready && check.unsettled.is_empty() {
                return Ok(Outcome::Converged {
                    services: services.len(),
                    after: start.elapsed(),
                });
            }
            unsettled = check.unsettled;
            settles_in = check.settles_in;
        }
        seen_ready = all_ready;
        let now = Instant::now();
        // `docker stack deploy` creates the services before it returns: none at all
        // will not change by waiting 25 minutes.
        if now >= start + timeout || services.is_empty() {
            return Ok(Outcome::TimedOut {
                services,
                unsettled,
                after: start.elapsed(),
            });
        }
        if now >= next_report {
            on_progress(Progress {
                services: &services,
                elapsed: now - start,
            });
            next_report += PROGRESS_EVERY;
        }
        let left = (start + timeout).saturating_duration_since(now);
        // A converged look is confirmed at once, or when its youngest task could be
        // stable (a failure meanwhile shows on that poll just the same); otherwise back
        // off.
        let wait = if all_ready {
            settles_in.clamp(FIRST_POLL, MAX_POLL)
        } else {
            pause
        };
        std::thread::sleep(
            wait.min(left)
                .min(next_report.saturating_duration_since(now)),
        );
        pause = (pause * 2).min(MAX_POLL);
    }
}
