//! Waiting for a stack to converge: every service has as many running tasks as it wants,
//! and no update in flight.
//!
//! An update state of `paused` (or `rollback_paused`) counts as settled: swarm pauses an
//! update when a single task flickers (`update_config.failure_action: pause`) and keeps
//! the flag until the next update, even once every task runs again — waiting for it to
//! clear would wait forever. `updating` and `rollback_started` are not settled.
//!
//! Polling is with backoff (0.5 s, doubling, at most 5 s), never a fixed long sleep. A
//! crash-looping task is "running" between its restarts, and one that fails some seconds
//! after it starts reads 1/1 until it does, so a look that says converged must hold on
//! two polls in a row, and the tasks must be stable: every running task running for the
//! stability window (`--stable-for`, default 10 s), and no task of the stack failed
//! within it. A task that fails later than the window after it started is not caught:
//! the window is the price in time of every deploy, so it is an option.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::swarm::docker::{Docker, DockerError};
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

/// The default `--stable-for`: how long every running task must have been running, and
/// no task of the stack may have failed, for the stack to count as converged.
pub const STABLE_FOR: Duration = Duration::from_secs(10);

/// One task of `docker inspect --type task`, as much of it as convergence reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub slot: u64,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(default)]
    pub status: TaskStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub state: String,
    /// When the task entered `state`.
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub err: String,
}

/// What the tasks say: why the stack is not stable yet (empty: it is), and how long until
/// it could be, if nothing fails meanwhile.
#[derive(Debug, Default)]
pub struct TaskCheck {
    pub unsettled: Vec<String>,
    pub settles_in: Duration,
}

/// Judge the stack's tasks against the stability window: a running task must have been
/// running for `stable_for`, and no task may have failed (or been rejected) within it.
/// A task that crashes some seconds after it starts is "running" while the replicas
/// read 1/1; the window is what tells it from a healthy one. `names` maps service ids
/// to service names, for the task names (`<service>.<slot>`) the report shows.
pub fn judge(tasks: &[Task], names: &[(&str, &str)], stable_for: Duration) -> TaskCheck {
    let mut check = TaskCheck::default();
    for t in tasks {
        // An unreadable timestamp proves nothing: count it as just now.
        let age = crate::timefmt::age(&t.status.timestamp).unwrap_or(Duration::ZERO);
        let left = stable_for.saturating_sub(age);
        if left.is_zero() {
            continue;
        }
        // `service ls` shows short ids, tasks carry full ones.
        let service = names
            .iter()
            .find(|(id, _)| !id.is_empty() && t.service_id.starts_with(id))
            .map_or(t.service_id.as_str(), |(_, name)| name);
        let task = match t.slot {
            0 => format!("{service}.{}", t.node_id),
            slot => format!("{service}.{slot}"),
        };
        let why = match t.status.state.as_str() {
            "failed" | "rejected" => format!(
                "task {task} {} {} ago{}",
                t.status.state,
                crate::duration::format(age),
                match t.status.err.as_str() {
                    "" => String::new(),
                    err => format!(": {err}"),
                }
            ),
            "running" => format!(
                "task {task} running for {}, not yet {}",
                crate::duration::format(age),
                crate::duration::format(stable_for)
            ),
            _ => continue,
        };
        check.unsettled.push(why);
        check.settles_in = check.settles_in.max(left);
    }
    check
}

/// Every task of the services (`docker service ps -q` lists the history swarm keeps,
/// then `docker inspect --type task`, whose status carries a timestamp) judged by
/// [`judge`]. Made only once a stack already looks converged.
fn check_tasks(
    docker: &Docker,
    services: &[Service],
    stable_for: Duration,
) -> Result<TaskCheck, DockerError> {
    let mut ps = vec![
        "service".to_owned(),
        "ps".into(),
        "-q".into(),
        "--no-trunc".into(),
    ];
    ps.extend(services.iter().map(|s| s.id.clone()));
    let ids: Vec<String> = docker
        .run(&ps)?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Ok(TaskCheck::default());
    }
    let mut inspect = vec!["inspect".to_owned(), "--type".into(), "task".into()];
    inspect.extend(ids);
    let tasks: Vec<Task> = docker.json_lines(&inspect)?;
    let names: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    Ok(judge(&tasks, &names, stable_for))
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

    fn task(state: &str, ago: Duration, err: &str) -> Task {
        let at = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        Task {
            id: "t".into(),
            service_id: "x123456789abcdef".into(),
            slot: 1,
            node_id: "n".into(),
            status: TaskStatus {
                state: state.into(),
                timestamp: format!("{at}"),
                err: err.into(),
            },
        }
    }

    #[test]
    fn tasks_must_be_stable_for_the_window() {
        let names = [("x123", "a_b_app")];
        let window = Duration::from_secs(10);
        let secs = Duration::from_secs;
        // Running long enough, an old failure, a finished older task: stable.
        let stable = [
            task("running", secs(30), ""),
            task("failed", secs(40), "non-zero exit (1)"),
            task("shutdown", secs(1), ""),
        ];
        let check = judge(&stable, &names, window);
        assert!(check.unsettled.is_empty(), "{check:?}");
        // A task 8 s into a life that ends at 8 s, after a failure 2 s before it started.
        let crashing = [
            task("running", secs(8), ""),
            task("failed", secs(9), "non-zero exit (1)"),
        ];
        let check = judge(&crashing, &names, window);
        assert_eq!(check.unsettled.len(), 2, "{check:?}");
        assert!(
            check.unsettled[0].starts_with("task a_b_app.1 running for 8"),
            "{check:?}"
        );
        assert!(
            check.unsettled[1].starts_with("task a_b_app.1 failed 9")
                && check.unsettled[1].ends_with(" ago: non-zero exit (1)"),
            "{check:?}"
        );
        // Stable at the earliest when the youngest has run the window.
        assert!(
            check.settles_in > secs(1) && check.settles_in <= secs(2),
            "{check:?}"
        );
        // A zero window asks nothing of the tasks.
        assert!(
            judge(&crashing, &names, Duration::ZERO)
                .unsettled
                .is_empty()
        );
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
