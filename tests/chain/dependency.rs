//! A cold dependency deployed under `ccci-lock --for-run`: held for the run's whole life,
//! counted, torn down, and the run's results kept.

use std::fs;
use std::time::Duration;

use super::{DEPENDENCY, DEPLOY_PATIENCE, RECIPE, lock_is_free, recipe_ci_script, spawn};
use crate::support::{output_within, stack, text};
use crate::swarm::{self, App, leftovers, only};

#[test]
fn g_a_run_holds_its_dependency_for_its_whole_life_counts_two_and_keeps_its_results() {
    if !swarm::available(
        "g_a_run_holds_its_dependency_for_its_whole_life_counts_two_and_keeps_its_results",
    ) {
        return;
    }
    let mut app = App::new();
    let b = app.build();
    let (d, dep) = (b.domain.clone(), b.dep.clone());
    let _gate = app.sb.fifo("gate-g1");
    let mut step = app.step("g1", &b, "gate", &recipe_ci_script());
    step.cmd.env("CHAIN_DEPENDENCY", DEPENDENCY);
    let mut run = spawn(&mut step);
    run.wait_for_any_within(DEPLOY_PATIENCE, &["stand-in): deployed 2"]);
    // Deployed, both held: a janitor pass now reaps neither, and says both are live.
    for d in [&d, &dep] {
        assert!(!leftovers(&stack(d)).is_empty(), "{d} is not deployed");
        assert!(!lock_is_free(&app, d), "{d} is not held");
    }
    let out = output_within(app.janitor(&only(&[&d, &dep]), &[]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("ccci-janitor: reaped"), "{err}");
    for d in [&d, &dep] {
        assert!(
            !leftovers(&stack(d)).is_empty(),
            "the janitor touched {d}: {err}"
        );
    }
    _gate.release();
    let (status, lines) = run.finish_within(DEPLOY_PATIENCE);
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let marks = step.marks();
    for needed in [
        format!("params {RECIPE} {} {} domain {d}", b.pr, b.git_ref),
        format!("holds {dep}"),
        "deployed 2".to_owned(),
        format!("down {d} 0"),
        format!("down {dep} 0"),
    ] {
        assert!(marks.lines().any(|l| l == needed), "{needed}: {marks}");
    }
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "== app lock: acquired {dep} for the rest of this run"
        ))),
        "{lines:?}"
    );
    step.wait_until_nothing_alive(Duration::ZERO);
    for d in [&d, &dep] {
        assert_eq!(leftovers(&stack(d)), Vec::<String>::new());
        assert!(lock_is_free(&app, d), "{d} is still held");
    }
    // What the harness wrote into its run dir is there for the dashboard.
    let results = app.sb.runs_dir().join("g1/results.json");
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(&results).expect("results.json")).unwrap();
    assert_eq!(results["domain"], d.as_str(), "{results}");
}
