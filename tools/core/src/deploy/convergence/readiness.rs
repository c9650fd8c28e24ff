//! Whether a service looks ready, from `docker service ls`: as many running tasks as it
//! wants, and no update in flight.
//!
//! An update state of `paused` (or `rollback_paused`) counts as settled: swarm pauses an
//! update when a single task flickers (`update_config.failure_action: pause`) and keeps
//! the flag until the next update, even once every task runs again — waiting for it to
//! clear would wait forever. `updating` and `rollback_started` are not settled.

use crate::swarm::Service;

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
