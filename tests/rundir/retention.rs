//! `ccci-rundir gc` keeps what a run wrote into its directory (issue 14 point 6): on the
//! cc-ci host the harness writes `results.json`, lint output and screenshots there, and
//! the dashboard serves them at /runs/<id>/. gc removes what ccci-rundir laid out after
//! `--older-than`, whole runs only after `--results-older-than`, and never a live run.

use std::fs;
use std::path::Path;

use predicates::prelude::*;

use super::age;
use crate::support::{Background, Sandbox, exists, list};

/// A run that writes what cc-ci's harness does into its run dir (results, an artifacts
/// directory, a screenshot) besides using what ccci-rundir laid out (a recipe clone, the
/// deploy counter).
const HARNESS: &str = r#"set -e
    echo '{"status":"pass"}' > "$CCCI_RUN_DIR/results.json"
    mkdir "$CCCI_RUN_DIR/artifacts"
    echo 'lint: clean' > "$CCCI_RUN_DIR/artifacts/lint.txt"
    printf 'PNG' > "$CCCI_RUN_DIR/screenshot.png"
    mkdir "$ABRA_DIR/recipes/immich"
    echo 'services: {}' > "$ABRA_DIR/recipes/immich/compose.yml"
    echo 1 > "$CCCI_DEPLOY_COUNT_FILE""#;

const WRITTEN: [&str; 3] = ["artifacts", "results.json", "screenshot.png"];

fn harness_run(sb: &Sandbox, id: &str) {
    sb.assert("ccci-rundir")
        .args(["--run-id", id, "--", "sh", "-c", HARNESS])
        .assert()
        .success();
}

/// What the harness wrote is all there, unchanged.
fn assert_results_intact(run: &Path) {
    let read = |p: &str| fs::read_to_string(run.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("results.json"), "{\"status\":\"pass\"}\n");
    assert_eq!(read("artifacts/lint.txt"), "lint: clean\n");
    assert_eq!(read("screenshot.png"), "PNG");
}

/// Everything ccci-rundir lays out is there.
fn assert_laid_out(run: &Path) {
    for part in [".run.lock", "abra/servers", "abra/recipes", "state"] {
        assert!(
            exists(&run.join(part)),
            "{part} is gone from {}",
            run.display()
        );
    }
}

fn gc_json(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let out = sb
        .assert("ccci-rundir")
        .args(["gc", "--json"])
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

fn ids(doc: &serde_json::Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {doc}"))
        .iter()
        .map(|e| e["run_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn gc_removes_what_rundir_laid_out_and_keeps_what_the_run_wrote() {
    let sb = Sandbox::new();
    let servers = sb.abra_servers();
    fs::write(servers.join("app.env"), "precious").unwrap();
    harness_run(&sb, "279");
    harness_run(&sb, "young");
    let run = sb.runs_dir().join("279");
    let young = sb.runs_dir().join("young");
    age(&run, "400 days ago");

    // One line, idle 400 days and the seconds the test took so far.
    let line = |verb: &str, tail: &str| {
        let head = format!("{verb} run 279 ({}, idle 9600h", run.display());
        predicate::str::starts_with(head)
            .and(predicate::str::ends_with(format!("{tail}\n")))
            .and(predicate::str::contains("\n").count(1))
    };
    let kept = "): kept artifacts, results.json, screenshot.png";
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "7d", "--dry-run"])
        .assert()
        .success()
        .stdout(line("would prune", kept));
    assert_laid_out(&run);

    // However old, without --results-older-than a run keeps what it wrote.
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "7d"])
        .assert()
        .success()
        .stdout(line("pruned", kept));
    assert_results_intact(&run);
    assert_eq!(
        list(&run),
        [".run.lock", "artifacts", "results.json", "screenshot.png"],
        "what ccci-rundir laid out is not gone"
    );
    // Through abra/servers, nothing of the canonical tree was touched.
    assert_eq!(
        fs::read_to_string(servers.join("app.env")).unwrap(),
        "precious"
    );
    // A young run is untouched.
    assert_laid_out(&young);
    assert_results_intact(&young);

    // The pruned run is still a run, as old as it was: its age counts from the run, not
    // from the prune.
    let doc = gc_json(&sb, &["--older-than", "7d"]);
    assert_eq!(ids(&doc, "kept"), ["279", "young"], "{doc}");
    assert_eq!(ids(&doc, "pruned"), Vec::<String>::new(), "{doc}");
    let kept = &doc["kept"][0];
    assert_eq!(kept["reason"], "results kept (no --results-older-than)");
    assert_eq!(kept["results"], serde_json::json!(WRITTEN));
    assert!(kept["idle_s"].as_u64().unwrap() > 399 * 86400, "{kept}");

    let doc = gc_json(&sb, &["--older-than", "7d", "--results-older-than", "500d"]);
    assert_eq!(doc["kept"][0]["reason"], "results kept until idle 12000h");
    assert_results_intact(&run);

    // Past --results-older-than, the whole run goes, what it wrote included.
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "7d", "--results-older-than", "300d"])
        .assert()
        .success()
        .stdout(line(
            "removed",
            "), results included: artifacts, results.json, screenshot.png",
        ));
    assert!(!exists(&run));
    assert_laid_out(&young);
    assert_results_intact(&young);
    assert_eq!(list(&sb.runs_dir()), [".gc~.lock", "young"]);
}

#[test]
fn results_older_than_removes_whole_old_runs_and_never_a_live_or_young_one() {
    let sb = Sandbox::new();
    sb.abra_servers();
    for id in ["old", "mid", "young"] {
        harness_run(&sb, id);
    }
    // A run with nothing but what ccci-rundir laid out goes whole after --older-than.
    sb.assert("ccci-rundir")
        .args(["--run-id", "bare", "--", "true"])
        .assert()
        .success();
    // A live run, however old, with results of its own.
    let gate = sb.fifo("gate");
    let mut live = sb.cmd("ccci-rundir");
    live.args(["--run-id", "live", "--", "sh", "-c"])
        .arg(format!(
            "{HARNESS}\necho wrote >&2; read x < '{}'",
            gate.path.display()
        ));
    let mut live = Background::spawn(live);
    live.wait_for("wrote");
    let runs = sb.runs_dir();
    age(&runs.join("old"), "40 days ago");
    age(&runs.join("live"), "40 days ago");
    age(&runs.join("mid"), "10 days ago");
    age(&runs.join("bare"), "10 days ago");

    let doc = gc_json(&sb, &["--older-than", "7d", "--results-older-than", "30d"]);
    assert_eq!(ids(&doc, "removed"), ["bare", "old"], "{doc}");
    assert_eq!(ids(&doc, "pruned"), ["mid"], "{doc}");
    assert_eq!(ids(&doc, "kept"), ["live", "young"], "{doc}");
    assert_eq!(ids(&doc, "failed"), Vec::<String>::new(), "{doc}");
    assert_eq!(doc["removed"][1]["results"], serde_json::json!(WRITTEN));
    assert!(
        doc["kept"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("held by pid {}", live.pid())),
        "{doc}"
    );

    assert_eq!(list(&runs), [".gc~.lock", "live", "mid", "young"]);
    assert_results_intact(&runs.join("mid"));
    assert!(!exists(&runs.join("mid/abra")) && !exists(&runs.join("mid/state")));
    for id in ["live", "young"] {
        assert_laid_out(&runs.join(id));
        assert_results_intact(&runs.join(id));
    }
    assert!(exists(&runs.join("live/abra/recipes/immich/compose.yml")));
    gate.release();
    assert!(live.finish().0.success());
}

#[test]
fn a_pruned_run_started_again_is_laid_out_afresh_beside_its_results() {
    // A run id used again (a restarted build) after gc pruned it gets its tree back, and
    // what the first attempt wrote is still there for the dashboard.
    let sb = Sandbox::new();
    sb.abra_servers();
    harness_run(&sb, "5");
    let run = sb.runs_dir().join("5");
    age(&run, "10 days ago");
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "7d"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("pruned run 5 ("));
    sb.assert("ccci-rundir")
        .args(["--run-id", "5", "--", "sh", "-c"])
        .arg(r#"[ -z "$(ls -A "$ABRA_DIR/recipes")" ] && [ -L "$ABRA_DIR/servers" ]"#)
        .assert()
        .success();
    assert_laid_out(&run);
    assert_results_intact(&run);
}
