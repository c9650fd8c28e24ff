//! What `ccci-deploy up` says while it waits for its stack: a progress line every 15 s,
//! and at the end the line that it converged, or what kept it from converging.

use std::time::Duration;

use super::{Outcome, Progress, last_task_error, ready, short};
use crate::deploy::TOOL;
use crate::domain::Domain;
use crate::swarm::docker::{Docker, DockerError};
use crate::{diag, duration, say};

/// The progress line: how many services are ready, and what the rest wait for.
pub fn say_progress(domain: &Domain, stack: &str, stable_for: Duration, p: &Progress<'_>) {
    let ready_now = p.services.iter().filter(|s| ready(s)).count();
    let waiting: Vec<String> = p
        .services
        .iter()
        .filter(|s| !ready(s))
        .map(|s| short(s, stack))
        .collect();
    // Every service ready but not converged: its tasks have not been stable long enough.
    let waiting = match waiting.is_empty() {
        true => format!("tasks not stable for {} yet", duration::format(stable_for)),
        false => waiting.join(", "),
    };
    say!(
        "== deploy: {domain} converging — {ready_now}/{} services ready ({waiting}), {} ==",
        p.services.len(),
        duration::format(p.elapsed)
    );
}

/// The end of the wait, said: `Ok(true)` when the stack converged. A timeout names every
/// service not ready with its last task error (asked of docker here, so a failing call
/// ends the report where it stands).
pub fn say_outcome(
    docker: &Docker,
    domain: &Domain,
    stack: &str,
    outcome: &Outcome,
) -> Result<bool, DockerError> {
    let (services, unsettled, after) = match outcome {
        Outcome::Converged { services, after } => {
            say!(
                "== deploy: {domain} converged in {} ({services} service{}) ==",
                duration::format(*after),
                if *services == 1 { "" } else { "s" }
            );
            return Ok(true);
        }
        Outcome::TimedOut {
            services,
            unsettled,
            after,
        } => (services, unsettled, *after),
    };
    say!(
        "== deploy: {domain} did not converge in {} ==",
        duration::format(after)
    );
    if services.is_empty() {
        diag!(TOOL, "{domain}: the stack {stack} has no services");
    }
    // All replicas up at the last look means their tasks never stayed up for
    // --stable-for (they keep failing): name those tasks, and every service.
    let all_look_ready = services.iter().all(ready);
    for s in services.iter().filter(|s| all_look_ready || !ready(s)) {
        let error = last_task_error(docker, s)?.unwrap_or_else(|| "no failed task".into());
        let state = s.update_state.as_deref().unwrap_or("no update");
        let what = if all_look_ready {
            "tasks not stable"
        } else {
            "not ready"
        };
        diag!(TOOL, "{what}: {} {} ({state}): {error}", s.name, s.replicas);
    }
    if all_look_ready {
        for why in unsettled {
            diag!(TOOL, "  {why}");
        }
    }
    Ok(false)
}
