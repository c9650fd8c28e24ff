//! Waiting for a stack to converge: every service has as many running tasks as it wants,
//! and no update in flight.
//!
//! An update state of `paused` (or `rollback_paused`) counts as settled: swarm pauses an
//! update when a single task flickers (`update_config.failure_action: pause`) and keeps
//! the flag until the next update, even once every task runs again — waiting for it to
//! clear would wait forever. `updating` and `rollback_started` are not settled.
//!
//! Polling is with backoff (0.5 s, doubling, at most 5 s), never a fixed long sleep. A
//! crash-looping task is "running" between its restarts, so a look that says converged
//! must hold on two polls in a row, every running task must have been running for 5 s,
//! and no task of the stack may have failed in the last 10 s.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::docker::{Docker, DockerError};
use crate::swarm::{self, Service};

const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(5);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Running and desired tasks, from `docker service ls`'s replicas column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replicas {
    pub running: u64,
    pub desired: u64,
    /// A job's `(done/total completed)`, when shown.
    pub completed: Option<(u64, u64)>,
}

/// `2/2`, `0/0`, `2/2 (max 1 per node)`, `0/1 (1/1 completed)`.
pub fn parse_replicas(s: &str) -> Option<Replicas> {
    let mut words = s.split_whitespace();
    let (running, desired) = words.next()?.split_once('/')?;
    let rest: Vec<&str> = words.collect();
    let completed = match rest.as_slice() {
        [done, "completed)"] => {
            let (d, t) = done.strip_prefix('(')?.split_once('/')?;
            Some((d.parse().ok()?, t.parse().ok()?))
        }
        _ => None,
    };
    Some(Replicas {
        running: running.parse().ok()?,
        desired: desired.parse().ok()?,
        completed,
    })
}

/// Whether an update state lets the service count as converged.
pub fn settled(update_state: Option<&str>) -> bool {
    matches!(
        update_state,
        None | Some("" | "completed" | "rollback_completed" | "paused" | "rollback_paused")
    )
}

pub fn ready(service: &Service) -> bool {
    let tasks_done = match parse_replicas(&service.replicas) {
        Some(Replicas {
            completed: Some((done, total)),
            ..
        }) => done == total,
        Some(r) => r.running == r.desired,
        None => false,
    };
    tasks_done && settled(service.update_state.as_deref())
}

/// How a service shows in progress lines: `app 1/2` or `db 0/1 updating`.
pub fn short(service: &Service, stack: &str) -> String {
    let name = service
        .name
        .strip_prefix(stack)
        .and_then(|n| n.strip_prefix('_'))
        .unwrap_or(&service.name);
    match service
        .update_state
        .as_deref()
        .filter(|s| !settled(Some(s)))
    {
        Some(state) => format!("{name} {} {state}", service.replicas),
        None => format!("{name} {}", service.replicas),
    }
}

#[derive(Debug)]
pub enum Outcome {
    Converged {
        services: usize,
        after: Duration,
    },
    TimedOut {
        services: Vec<Service>,
        after: Duration,
    },
}

/// What a progress report knows: the services not ready yet and how long it has been.
pub struct Progress<'a> {
    pub services: &'a [Service],
    pub elapsed: Duration,
}

/// Poll the stack until it converges or `timeout` runs out, reporting every 15 s.
pub fn wait(
    docker: &Docker,
    stack: &str,
    timeout: Duration,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Outcome, DockerError> {
    let start = Instant::now();
    let mut pause = FIRST_POLL;
    let mut next_report = start + PROGRESS_EVERY;
    let mut seen_ready = false;
    loop {
        let services = swarm::services(docker, Some(stack))?;
        // No service at all is not "nothing left to wait for": the deploy made none yet.
        let all_ready = !services.is_empty() && services.iter().all(ready);
        // Twice in a row: a crash-looping task caught in its instant of "running" must
        // not pass for a converged service.
        if all_ready && seen_ready && tasks_settled(docker, &services)? {
            return Ok(Outcome::Converged {
                services: services.len(),
                after: start.elapsed(),
            });
        }
        seen_ready = all_ready;
        let now = Instant::now();
        // `docker stack deploy` creates the services before it returns: none at all
        // will not change by waiting 25 minutes.
        if now >= start + timeout || services.is_empty() {
            return Ok(Outcome::TimedOut {
                services,
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
        // Confirming a converged look needs no long wait; otherwise back off.
        let wait = if all_ready { FIRST_POLL } else { pause };
        std::thread::sleep(
            wait.min(left)
                .min(next_report.saturating_duration_since(now)),
        );
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// How long no task may have failed for a stack to count as converged: a crash-looping
/// task shows "running" between its restarts, but it fails again within this window.
pub const QUIET_FOR: Duration = Duration::from_secs(10);

/// How long every running task must have been running: a task that crashes a few
/// seconds after it starts has not failed yet when the replicas first read 1/1.
pub const RUNNING_FOR: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    timestamp: String,
}

/// Whether the services' tasks have settled: every running task has been running for
/// [`RUNNING_FOR`], and none failed or was rejected within [`QUIET_FOR`] (`docker inspect
/// --type task`, whose status carries a timestamp). Two docker calls, made only once a
/// stack already looks converged.
fn tasks_settled(docker: &Docker, services: &[Service]) -> Result<bool, DockerError> {
    let mut ps = vec![
        "service".to_owned(),
        "ps".into(),
        "-q".into(),
        "--no-trunc".into(),
    ];
    ps.extend(services.iter().map(|s| s.id.clone()));
    let tasks: Vec<String> = docker
        .run(&ps)?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if tasks.is_empty() {
        return Ok(true);
    }
    let mut inspect = vec!["inspect".to_owned(), "--type".into(), "task".into()];
    inspect.extend(tasks);
    let statuses: Vec<TaskStatus> = docker.json_lines_as(&inspect, "{{json .Status}}")?;
    Ok(!statuses.iter().any(|t| {
        let age = crate::timefmt::age(&t.timestamp).unwrap_or(Duration::ZERO);
        match t.state.as_str() {
            "failed" | "rejected" => age < QUIET_FOR,
            "running" => age < RUNNING_FOR,
            _ => false,
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskLine {
    #[serde(default)]
    error: String,
    #[serde(default)]
    current_state: String,
}

/// The error of the service's newest failed task (`docker service ps --no-trunc` lists
/// newest first), if any.
pub fn last_task_error(docker: &Docker, service: &Service) -> Result<Option<String>, DockerError> {
    let tasks: Vec<TaskLine> = docker.json_lines(&["service", "ps", "--no-trunc", &service.id])?;
    Ok(tasks
        .into_iter()
        .find(|t| !t.error.is_empty())
        .map(|t| format!("{} ({})", t.error, t.current_state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(replicas: &str, state: Option<&str>) -> Service {
        Service {
            name: "a_b_app".into(),
            id: "x".into(),
            replicas: replicas.into(),
            update_state: state.map(Into::into),
            stack: Some("a_b".into()),
        }
    }

    #[test]
    fn replicas_strings() {
        let r = |running, desired, completed| {
            Some(Replicas {
                running,
                desired,
                completed,
            })
        };
        assert_eq!(parse_replicas("2/2"), r(2, 2, None));
        assert_eq!(parse_replicas("0/0"), r(0, 0, None));
        assert_eq!(parse_replicas("1/3"), r(1, 3, None));
        assert_eq!(parse_replicas("2/2 (max 1 per node)"), r(2, 2, None));
        assert_eq!(parse_replicas("0/1 (1/1 completed)"), r(0, 1, Some((1, 1))));
        assert_eq!(parse_replicas("1/1 (0/1 completed)"), r(1, 1, Some((0, 1))));
        for bad in ["", "2", "a/b", "2/", "/2", "-1/2"] {
            assert_eq!(parse_replicas(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_update_state() {
        for ok in [
            None,
            Some("completed"),
            Some("rollback_completed"),
            Some("paused"),
            Some("rollback_paused"),
        ] {
            assert!(settled(ok), "{ok:?}");
        }
        for busy in [
            "updating",
            "rollback_started",
            "rollback_paused_typo",
            "unknown",
        ] {
            assert!(!settled(Some(busy)), "{busy}");
        }
    }

    #[test]
    fn readiness() {
        assert!(ready(&svc("2/2", None)));
        assert!(ready(&svc("0/0", None)), "scaled to 0 is converged");
        assert!(
            ready(&svc("2/2 (max 1 per node)", Some("paused"))),
            "paused is settled"
        );
        assert!(ready(&svc("0/1 (1/1 completed)", None)), "a finished job");
        assert!(!ready(&svc("1/2", None)));
        assert!(!ready(&svc("2/2", Some("updating"))));
        assert!(
            !ready(&svc("1/1 (0/1 completed)", None)),
            "a job still running"
        );
        assert!(!ready(&svc("garbage", None)));
        assert_eq!(
            short(&svc("1/2", Some("updating")), "a_b"),
            "app 1/2 updating"
        );
        assert_eq!(short(&svc("1/2", Some("paused")), "a_b"), "app 1/2");
    }
}
