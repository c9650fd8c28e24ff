//! The step's exit status: 0 when green, the harness's when red (under `sh -e`), 124 at
//! the deadline (after the teardown), 125 without a build parameter.

use std::fs;
use std::time::Duration;

use super::{lock_is_free, recipe_ci_script, run};
use crate::support::stack;
use crate::swarm::{self, App, leftovers};

#[test]
fn d_green_is_0_and_red_is_the_harness_status_under_sh_e() {
    if !swarm::available("d_green_is_0_and_red_is_the_harness_status_under_sh_e") {
        return;
    }
    let mut app = App::new();
    let chain = recipe_ci_script();
    for (build, mode, want) in [("d1", "green", 0), ("d2", "red", 3)] {
        let b_d = app.build();
        let d = b_d.domain.clone();
        let mut step = app.step(build, &b_d, mode, &chain);
        let (status, lines) = run(&mut step);
        assert_eq!(status.code(), Some(want), "{mode}: {lines:?}");
        let marks = step.marks();
        assert!(
            marks.contains("start pid") && marks.contains("args runner/run_recipe_ci.py"),
            "{marks}"
        );
        assert!(
            marks.contains("deployed 1\n") && marks.contains(&format!("down {d} 0\n")),
            "{marks}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("== deploy: {d} converged in "))),
            "{lines:?}"
        );
        assert_eq!(leftovers(&stack(&d)), Vec::<String>::new(), "{mode}");
        step.wait_until_nothing_alive(Duration::ZERO);
        assert!(lock_is_free(&app, &d));
        // The guard's report is where .drone.yml puts it.
        let report = app.sb.path(&format!("ws-{build}/ccci-guard-report.json"));
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(&report).expect("guard report")).unwrap();
        assert_eq!(report["outcome"], "exited", "{report}");
    }
}

#[test]
fn e_the_deadline_while_deployed_is_124_after_the_teardown() {
    if !swarm::available("e_the_deadline_while_deployed_is_124_after_the_teardown") {
        return;
    }
    let mut app = App::new();
    let b_d = app.build();
    let d = b_d.domain.clone();
    // The only edit to .drone.yml's commands: the 50m deadline becomes 30s (long enough
    // to deploy on a loaded machine; the marks prove the deploy came first).
    let chain = recipe_ci_script();
    assert!(chain.contains("--deadline 50m "), "{chain}");
    let chain = chain.replace("--deadline 50m ", "--deadline 30s ");
    let mut step = app.step("e1", &b_d, "wait", &chain);
    let (status, lines) = run(&mut step);
    assert_eq!(status.code(), Some(124), "{lines:?}");
    let marks = step.marks();
    let order: Vec<&str> = marks
        .lines()
        .filter(|l| {
            [
                "deployed 1".to_owned(),
                "term".to_owned(),
                format!("down {d} 0"),
            ]
            .contains(&l.to_string())
        })
        .collect();
    assert_eq!(
        order,
        [
            "deployed 1".to_owned(),
            "term".to_owned(),
            format!("down {d} 0")
        ],
        "{marks}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("== guard: deadline 30s reached")),
        "{lines:?}"
    );
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
    step.wait_until_nothing_alive(Duration::ZERO);
    assert!(lock_is_free(&app, &d));
    let report = app.sb.path("ws-e1/ccci-guard-report.json");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "deadline", "{report}");
}

#[test]
fn h_without_a_build_parameter_the_step_stops_before_anything_runs() {
    let mut app = App::new();
    let b = app.build();
    let mut step = app.step("h1", &b, "green", &recipe_ci_script());
    step.cmd.env_remove("PR");
    let (status, lines) = run(&mut step);
    assert_eq!(status.code(), Some(125), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ccci-rundir: PR is not set")),
        "{lines:?}"
    );
    assert_eq!(step.marks(), "", "the harness ran");
    assert_eq!(
        crate::support::list(&app.sb.lock_dir()),
        Vec::<String>::new()
    );
}
