//! `ccci-rundir gc`: old free runs go, held runs stay, nothing outside a run is touched.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use predicates::prelude::*;

use crate::support::{Background, Sandbox, exists};

/// Make a run dir look idle for ten days (the directory and state/, links not followed).
fn age(run: &Path) {
    for p in [run.to_owned(), run.join("state")] {
        let ok = Command::new("touch")
            .args(["-h", "-d", "10 days ago"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

#[test]
fn gc_removes_old_free_runs_keeps_held_ones_and_never_follows_servers() {
    let sb = Sandbox::new();
    let servers = sb.abra_servers();
    fs::write(servers.join("warm-immich.ci.example.org.env"), "precious").unwrap();
    // An old, finished run; an old run still in progress; a fresh finished run.
    sb.assert("ccci-rundir")
        .args(["--run-id", "old", "--", "true"])
        .assert()
        .success();
    sb.assert("ccci-rundir")
        .args(["--run-id", "new", "--", "true"])
        .assert()
        .success();
    let gate = sb.fifo("gate");
    let mut held = sb.cmd("ccci-rundir");
    held.args([
        "--run-id",
        "held",
        "--",
        "sh",
        "-c",
        &format!("read x < '{}'", gate.path.display()),
    ]);
    let mut held = Background::spawn(held);
    held.wait_for("== run dir:");
    age(&sb.runs_dir().join("old"));
    age(&sb.runs_dir().join("held"));

    // A dry run says what would go and removes nothing.
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "7d", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("would remove run old ("));
    assert!(exists(&sb.runs_dir().join("old")));

    let out = sb
        .assert("ccci-rundir")
        .args(["gc", "--older-than", "7d", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["version"], 1);
    let ids = |k: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["run_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("removed"), ["old"]);
    assert_eq!(ids("kept"), ["held", "new"]);
    let held_entry = &doc["kept"][0];
    assert!(
        held_entry["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", held.pid())),
        "{held_entry}"
    );

    assert!(!exists(&sb.runs_dir().join("old")));
    assert!(exists(&sb.runs_dir().join("held/abra/servers")));
    assert_eq!(
        fs::read_to_string(servers.join("warm-immich.ci.example.org.env")).unwrap(),
        "precious"
    );
    assert_eq!(
        fs::read_dir(sb.runs_dir()).unwrap().count(),
        2,
        "gc left something behind"
    );
    gate.release();
    assert!(held.finish().0.success());
}

#[test]
fn gc_never_follows_a_symlink_in_the_runs_dir() {
    let sb = Sandbox::new();
    let elsewhere = sb.path("elsewhere");
    fs::create_dir_all(elsewhere.join("state")).unwrap();
    fs::write(elsewhere.join("data"), "keep").unwrap();
    fs::create_dir_all(sb.runs_dir()).unwrap();
    symlink(&elsewhere, sb.runs_dir().join("evil")).unwrap();
    age(&elsewhere);
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d"])
        .assert()
        .success();
    assert_eq!(fs::read_to_string(elsewhere.join("data")).unwrap(), "keep");
    assert!(exists(&sb.runs_dir().join("evil")));
}

#[test]
fn gc_usage_errors_are_125_and_a_missing_runs_dir_is_nothing_to_do() {
    let sb = Sandbox::new();
    sb.assert("ccci-rundir").arg("gc").assert().code(125);
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "soon"])
        .assert()
        .code(125);
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d", "--", "true"])
        .assert()
        .code(125);
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d"])
        .assert()
        .success();
    assert!(!exists(&sb.runs_dir()));
}
