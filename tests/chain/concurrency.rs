//! Steps at once: two domains neither waiting, the same domain twice serialized visibly.

use std::time::Duration;

use super::{DEPLOY_PATIENCE, recipe_ci_script, spawn};
use crate::support::stack;
use crate::swarm::{self, App, leftovers};

#[test]
fn b_two_domains_at_once_are_both_green_and_neither_waits() {
    if !swarm::available("b_two_domains_at_once_are_both_green_and_neither_waits") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    let (b1, b2) = (app.build(), app.build());
    let (d1, d2) = (b1.domain.clone(), b2.domain.clone());
    let gates: std::collections::HashMap<&str, _> = [
        ("gate-b1", app.sb.fifo("gate-b1")),
        ("gate-b2", app.sb.fifo("gate-b2")),
    ]
    .into();
    let mut s1 = app.step("b1", &b1, "gate", &chain);
    let mut s2 = app.step("b2", &b2, "gate", &chain);
    let (mut r1, mut r2) = (spawn(&mut s1), spawn(&mut s2));
    // Both deployed at the same time: each waits at its gate until both are up.
    r1.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    r2.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    for d in [&d1, &d2] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} is not deployed");
    }
    gates["gate-b1"].release();
    gates["gate-b2"].release();
    for (r, d) in [(r1, &d1), (r2, &d2)] {
        let (status, lines) = r.finish_within(DEPLOY_PATIENCE);
        assert_eq!(status.code(), Some(0), "{d}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("— waiting ==")),
            "{d} waited: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("== app lock: acquired {d} =="))),
            "{lines:?}"
        );
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
    }
    s1.wait_until_nothing_alive(Duration::ZERO);
    s2.wait_until_nothing_alive(Duration::ZERO);
}

#[test]
fn c_the_same_domain_twice_serializes_visibly_and_both_are_green() {
    if !swarm::available("c_the_same_domain_twice_serializes_visibly_and_both_are_green") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    let b_d = app.build();
    let d = b_d.domain.clone();
    let gates: std::collections::HashMap<&str, _> = [("gate-c1", app.sb.fifo("gate-c1"))].into();
    let mut first = app.step("c1", &b_d, "gate", &chain);
    let mut second = app.step("c2", &b_d, "green", &chain);
    let mut r1 = spawn(&mut first);
    r1.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed"]);
    // The first run holds the domain, deployed: the second must wait, and say so.
    let mut r2 = spawn(&mut second);
    let waiting = r2.wait_for("— waiting ==");
    assert!(
        waiting.contains(&format!("another run of {d} in flight")) && waiting.contains("run c1"),
        "{waiting}"
    );
    assert_eq!(
        second.marks(),
        "",
        "the second harness started while the first held {d}"
    );
    gates["gate-c1"].release();
    let (status, lines1) = r1.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines1:?}");
    let (status, lines2) = r2.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines2:?}");
    let waited = |lines: &[String]| lines.iter().any(|l| l.contains("— waiting =="));
    assert!(!waited(&lines1) && waited(&lines2));
    let acquired_after = format!("== app lock: acquired {d} after ");
    assert!(
        lines2.iter().any(|l| l.contains(&acquired_after)),
        "{lines2:?}"
    );
    // Each run counted exactly one deploy: the harness's `count --expect 1` passed.
    for (step, lines) in [(&first, &lines1), (&second, &lines2)] {
        assert!(step.marks().contains("deployed 1\n"), "{lines:?}");
    }
    // ... and the second deployed only after the first had torn down.
    assert!(first.marks().contains(&format!("down {d} 0\n")));
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
}
