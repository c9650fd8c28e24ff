//! `up` converges and is counted once, `down` removes everything (twice is harmless), and
//! what never converges (too slow, crash looping, crashing seconds in) is named as such.

use std::time::{Duration, Instant};

use crate::support::{DEPLOY_PATIENCE, output_in, output_within, stack, text};
use crate::swarm::{self, App, leftovers};

#[test]
fn up_converges_is_counted_once_and_down_removes_everything_twice() {
    if !swarm::available("up_converges_is_counted_once_and_down_removes_everything_twice") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t1");
    let stack = stack(&d);
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" count --expect 1 && \
         \"$DEPLOY\" status {d} --json > \"$CCCI_RUN_DIR/status.json\" && \
         \"$DEPLOY\" down {d} && \"$DEPLOY\" down {d}"
    );
    let out = output_in(app.chain("1", &d, &script), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} converged in ")) && err.contains("(2 services) =="),
        "{err}"
    );
    assert_eq!(text(&out.stdout).trim(), "1", "count");
    // Status saw every kind of resource while it was up.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.sb.runs_dir().join("1/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["version"], 1);
    assert_eq!(status["stack"], stack.as_str());
    assert_eq!(status["services"].as_array().unwrap().len(), 2);
    for kind in ["volumes", "secrets", "configs", "networks", "env_files"] {
        assert_eq!(
            status[kind].as_array().unwrap().len(),
            1,
            "{kind}: {status}"
        );
    }
    // The first down removed all of it, the second found nothing.
    let teardown: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("== teardown:"))
        .collect();
    assert_eq!(teardown.len(), 2, "{err}");
    assert!(
        teardown[0]
            .contains("removed 2 services, 1 volume, 1 secret, 1 config, 1 network, 1 env file in"),
        "{err}"
    );
    assert!(teardown[1].contains("removed nothing"), "{err}");
    assert_eq!(leftovers(&stack), Vec::<String>::new());
    assert!(!app.env_file(&d).exists());
}

#[test]
fn two_ups_in_one_run_fail_the_count_with_the_dg41_line() {
    if !swarm::available("two_ups_in_one_run_fail_the_count_with_the_dg41_line") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t2");
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --set APP_REPLICAS=1 --timeout 2m && \
         \"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" count --expect 1"
    );
    let out = output_in(app.chain("2", &d, &script), DEPLOY_PATIENCE);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("!! deploy-count 2 != 1 (DG4.1 violation)"),
        "{}",
        text(&out.stderr)
    );
    // --set reached the app's .env.
    let env = std::fs::read_to_string(app.env_file(&d)).unwrap();
    assert!(env.contains("APP_REPLICAS=1"), "{env}");
}

#[test]
fn a_service_that_never_converges_is_named_near_the_timeout() {
    if !swarm::available("a_service_that_never_converges_is_named_near_the_timeout") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t5");
    let start = Instant::now();
    // Past 15 s of convergence, so the progress line shows too (abra's steps before it
    // count against --timeout as well).
    let script = format!("\"$DEPLOY\" up {d} --recipe never-converges --timeout 20s");
    let (status, lines) = crate::support::Background::spawn(app.chain("5", &d, &script))
        .finish_within(Duration::from_secs(60));
    let took = start.elapsed();
    let err = lines.join("\n");
    assert_eq!(status.code(), Some(1), "{err}");
    let progress = format!("== deploy: {d} converging — 0/1 services ready (broken 0/1), 15s ==");
    assert!(err.contains(&progress), "{err}");
    let gave_up = format!("== deploy: {d} did not converge in ");
    assert!(err.contains(&gave_up), "{err}");
    let named = format!("not ready: {}_broken 0/1", stack(&d));
    assert!(err.contains(&named), "{err}");
    assert!(
        err.contains("No such image"),
        "the failed task's error: {err}"
    );
    assert!(took >= Duration::from_secs(20), "gave up early: {took:?}");
    // Rejected tasks keep re-creating the stack's network for a moment after its
    // removal: teardown must still end with nothing left, and say so with 0.
    let out = output_within(app.chain("5", &d, &format!("\"$DEPLOY\" down {d}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
    assert!(
        took < Duration::from_secs(90),
        "long past the timeout: {took:?}"
    );
}

#[test]
fn a_crash_looping_service_never_counts_as_converged() {
    if !swarm::available("a_crash_looping_service_never_counts_as_converged") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t8");
    let script = format!("\"$DEPLOY\" up {d} --recipe crash-loop --timeout 14s");
    let out = output_within(app.chain("8", &d, &script));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not converge"), "{err}");
    assert!(
        err.contains("non-zero exit"),
        "the failed task's error: {err}"
    );
}

#[test]
fn a_service_that_crashes_seconds_after_it_starts_never_counts_as_converged() {
    if !swarm::available("a_service_that_crashes_seconds_after_it_starts_never_counts_as_converged")
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tc");
    let stack = stack(&d);
    // Its task reads 1/1 for 8 s, then fails: far longer than two polls apart, so only the
    // tasks' history and running time can tell. Two crashes fit in 24 s.
    let script = format!("\"$DEPLOY\" up {d} --recipe slow-crash --timeout 24s");
    let out = output_in(app.chain("c", &d, &script), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("converged in"), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} did not converge in ")),
        "{err}"
    );
    // The failing service is named with its task's error, whichever look came last.
    let named = [
        format!("not ready: {stack}_crashy 0/1"),
        format!("tasks not stable: {stack}_crashy 1/1"),
    ];
    assert!(named.iter().any(|n| err.contains(n)), "{err}");
    assert!(err.contains("non-zero exit"), "the task's error: {err}");
}
