//! What a stack's tasks say (`docker service ps`, `docker inspect --type task`): whether
//! they are stable, and the newest failure's error for the report.
//!
//! A crash-looping task is "running" between its restarts, and one that fails some
//! seconds after it starts reads 1/1 until it does, so replicas up is not enough: every
//! running task must have been running for the stability window (`--stable-for`,
//! default 10 s), and no task of the stack may have failed within it. A task that fails
//! later than the window after it started is not caught: the window is the price in time
//! of every deploy, so it is an option.

use std::time::Duration;

use serde::Deserialize;

use crate::swarm::Service;
use crate::swarm::docker::{Docker, DockerError};

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
pub(super) fn check_tasks(
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
}
