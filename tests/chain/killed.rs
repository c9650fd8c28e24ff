//! A killed step: a SIGKILL of its shell still tears down, a chain killed whole is an
//! orphan one janitor pass reaps.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{DEPENDENCY, DEPLOY_PATIENCE, lock_is_free, recipe_ci_script, spawn};
use crate::support::{output_within, stack, text};
use crate::swarm::{self, App, leftovers, only};

#[test]
fn a_sigkill_of_the_step_shell_tears_down_and_leaves_nothing() {
    if !swarm::available("a_sigkill_of_the_step_shell_tears_down_and_leaves_nothing") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let dep = b_d.dep.clone();
    let mut step = app.step("a1", &b_d, "wait", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let mut run = spawn(&mut step);
    step.wait_for_mark("waiting");
    assert!(!leftovers(&stack(&d)).is_empty(), "not deployed");
    assert!(
        !leftovers(&stack(&dep)).is_empty(),
        "the dependency is not deployed"
    );
    // What a Drone cancel does: SIGKILL the step's /bin/sh, nothing else. (Not
    // `run.finish()`: dropping a Background SIGKILLs its whole process group, the guard
    // included — that would be scenario f, not a cancel. `run` lives to the end.)
    kill(Pid::from_raw(run.pid() as i32), Signal::SIGKILL).unwrap();
    let status = run.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    step.wait_until_nothing_alive(DEPLOY_PATIENCE);
    let marks = step.marks();
    assert!(
        marks.contains("term\n")
            && marks.contains(&format!("down {d} 0\n"))
            && marks.contains(&format!("down {dep} 0\n")),
        "{marks}"
    );
    for d in [&d, &dep] {
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
        assert!(lock_is_free(&app, d), "the lock of {d} is still held");
    }
    let marks = step.marks();
    assert_eq!(marks.matches("term\n").count(), 1, "{marks}");
    drop(run);
}

#[test]
fn f_a_chain_killed_whole_is_orphaned_and_one_janitor_pass_reaps_it() {
    if !swarm::available("f_a_chain_killed_whole_is_orphaned_and_one_janitor_pass_reaps_it") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let dep = b_d.dep.clone();
    let mut step = app.step("f1", &b_d, "wait", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let run = spawn(&mut step);
    step.wait_for_mark("waiting");
    // Every process of the chain at once, as a host crash or the OOM killer would: stop
    // them all first, so no death (the guard's parent-death signals) can start a teardown
    // before the rest are killed.
    let chain = step.alive();
    assert!(chain.len() >= 3, "{chain:?}");
    for (pid, _) in &chain {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
    }
    for (pid, _) in &chain {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    step.wait_until_nothing_alive(crate::support::PATIENCE);
    drop(run);
    assert!(!step.marks().contains("term"), "{}", step.marks());
    for d in [&d, &dep] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} was not orphaned");
        assert!(app.sb.lockfile(d).exists());
    }
    // One janitor pass, allowed to touch this test's domains only: the run's app and its
    // dependency, both orphans now that nothing of the run lives.
    let out = output_within(app.janitor(&only(&[&d, &dep]), &[]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for d in [&d, &dep] {
        assert!(err.contains(&format!("ccci-janitor: reaped {d}")), "{err}");
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new(), "{err}");
        assert!(
            !app.sb.lockfile(d).exists(),
            "the lockfile outlived the reap"
        );
        assert!(!app.env_file(d).exists());
    }
}
