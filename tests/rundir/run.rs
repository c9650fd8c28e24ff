//! Run mode and --print: the layout, the repair of a crashed attempt, the run lock.

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use predicates::prelude::*;

use super::vars;
use crate::support::{Background, Sandbox, exists};

#[test]
fn lays_out_links_to_the_canonical_tree_and_empty_recipes_and_state() {
    let sb = Sandbox::new();
    let servers = sb.abra_servers();
    let out = sb
        .assert("ccci-rundir")
        .args(["--run-id", "279", "--", "env"])
        .assert()
        .success()
        .stderr(predicate::str::diff(format!(
            "== run dir: {0}/279 (ABRA_DIR={0}/279/abra) ==\n",
            sb.runs_dir().display()
        )))
        .get_output()
        .stdout
        .clone();
    let run = sb.runs_dir().join("279");
    let v = vars(&out);
    let expect = |k: &str, p: std::path::PathBuf| assert_eq!(v[k], p.display().to_string(), "{k}");
    expect("ABRA_DIR", run.join("abra"));
    expect("CCCI_RUN_DIR", run.clone());
    expect("CCCI_STATE_DIR", run.join("state"));
    expect("CCCI_DEPLOY_COUNT_FILE", run.join("state/deploys"));
    expect("CCCI_OP_STATE_FILE", run.join("state/opstate"));
    expect("CCCI_DEPS_FILE", run.join("state/deps"));
    expect("CCCI_DEPSKIP_FILE", run.join("state/depskip"));
    assert_eq!(v["CCCI_RUN_ID"], "279");
    assert_eq!(fs::read_link(run.join("abra/servers")).unwrap(), servers);
    assert_eq!(
        fs::read_link(run.join("abra/catalogue")).unwrap(),
        sb.abra_dir().join("catalogue")
    );
    assert!(
        sb.abra_dir().join("catalogue").is_dir(),
        "a missing canonical catalogue is created"
    );
    assert!(
        run.join("abra/recipes").is_dir()
            && fs::read_dir(run.join("abra/recipes")).unwrap().count() == 0
    );
    assert!(run.join("state").is_dir() && fs::read_dir(run.join("state")).unwrap().count() == 0);
}

#[test]
fn a_crashed_attempt_is_repaired_and_its_files_are_gone() {
    let sb = Sandbox::new();
    let servers = sb.abra_servers();
    fs::write(servers.join("keep.env"), "precious").unwrap();
    let run = sb.runs_dir().join("7");
    fs::create_dir_all(run.join("abra/recipes/immich/.git")).unwrap();
    fs::write(run.join("abra/recipes/immich/compose.yml"), "old").unwrap();
    fs::create_dir_all(run.join("state")).unwrap();
    fs::write(run.join("state/deploys"), "{}\n{}\n").unwrap();
    symlink("/nonexistent/elsewhere", run.join("abra/servers")).unwrap(); // a wrong link
    // A link inside recipes/ to outside data: emptying must unlink it, not follow it.
    let outside = sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("data"), "keep").unwrap();
    symlink(&outside, run.join("abra/recipes/link")).unwrap();

    sb.assert("ccci-rundir")
        .args(["--run-id", "7", "--", "true"])
        .assert()
        .success();
    assert_eq!(fs::read_link(run.join("abra/servers")).unwrap(), servers);
    assert_eq!(fs::read_dir(run.join("abra/recipes")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(run.join("state")).unwrap().count(), 0);
    assert_eq!(
        fs::read_to_string(servers.join("keep.env")).unwrap(),
        "precious"
    );
    assert_eq!(fs::read_to_string(outside.join("data")).unwrap(), "keep");
}

#[test]
fn a_real_directory_where_servers_link_belongs_is_refused_and_left_intact() {
    let sb = Sandbox::new();
    sb.abra_servers();
    let real = sb.runs_dir().join("7/abra/servers");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("someones.env"), "data").unwrap();
    sb.assert("ccci-rundir")
        .args(["--run-id", "7", "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .code(125)
        .stderr(predicate::str::contains(real.display().to_string()))
        .stderr(predicate::str::contains("real directory"));
    assert_eq!(
        fs::read_to_string(real.join("someones.env")).unwrap(),
        "data"
    );
    assert!(!sb.path("ran").exists());
}

#[test]
fn a_missing_canonical_servers_dir_is_125_with_the_variable() {
    let sb = Sandbox::new();
    sb.assert("ccci-rundir")
        .args(["--run-id", "7", "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(format!(
            "ccci-rundir: {}/servers does not exist — is abra set up? (set CCCI_CANONICAL_ABRA_DIR)",
            sb.abra_dir().display()
        )));
}

#[test]
fn the_same_run_id_twice_at_once_is_refused_naming_the_first() {
    let sb = Sandbox::new();
    sb.abra_servers();
    let gate = sb.fifo("gate");
    let first = super::run_holding(&sb, "7", &gate);
    // While it runs, its .run.lock is held (flock(1) agrees) ...
    let lock = sb.runs_dir().join("7/.run.lock");
    assert!(
        !Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    );
    // ... and a second run of the same id is refused, naming it.
    sb.assert("ccci-rundir")
        .args(["--run-id", "7", "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .code(125)
        .stderr(predicate::str::diff(format!(
            "ccci-rundir: run 7 is already in progress (pid {})\n",
            first.pid()
        )));
    assert!(!sb.path("ran").exists());
    gate.release();
    assert!(first.finish().0.success());
    // Free again once the first has exited.
    sb.assert("ccci-rundir")
        .args(["--run-id", "7", "--", "true"])
        .assert()
        .success();
}

#[test]
fn two_runs_at_once_never_share_a_file_nor_a_deploy_count() {
    // CONC-A1: two overlapping builds each count their own deploy and read 1, not 2.
    let sb = Sandbox::new();
    sb.abra_servers();
    let script = |gate: &str| {
        format!(
            "echo deploy >> \"$CCCI_DEPLOY_COUNT_FILE\"; env > \"$CCCI_STATE_DIR/../env\"; \
             echo started >&2; read x < '{gate}'; \
             echo \"count=$(wc -l < \"$CCCI_DEPLOY_COUNT_FILE\")\""
        )
    };
    let (ga, gb) = (sb.fifo("ga"), sb.fifo("gb"));
    let spawn = |id: &str, gate: &crate::support::Gate| {
        let mut cmd = sb.cmd("ccci-rundir");
        cmd.args([
            "--run-id",
            id,
            "--",
            "sh",
            "-c",
            &script(&gate.path.display().to_string()),
        ]);
        cmd.stdout(std::process::Stdio::piped());
        Background::spawn(cmd)
    };
    let (mut a, mut b) = (spawn("101", &ga), spawn("102", &gb));
    // Both have counted their deploy before either reads its count.
    a.wait_for("started");
    b.wait_for("started");
    ga.release();
    gb.release();
    for (mut bg, id) in [(a, "101"), (b, "102")] {
        let mut stdout = bg.child.stdout.take().unwrap();
        let (status, lines) = bg.finish();
        assert!(status.success(), "{lines:?}");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        assert_eq!(out.trim(), "count=1", "run {id} saw another run's deploys");
    }
    let env = |id: &str| vars(&fs::read(sb.runs_dir().join(id).join("env")).unwrap());
    let (va, vb) = (env("101"), env("102"));
    for key in [
        "ABRA_DIR",
        "CCCI_RUN_ID",
        "CCCI_RUN_DIR",
        "CCCI_STATE_DIR",
        "CCCI_DEPLOY_COUNT_FILE",
        "CCCI_OP_STATE_FILE",
        "CCCI_DEPS_FILE",
        "CCCI_DEPSKIP_FILE",
    ] {
        assert!(
            va.contains_key(key) && vb.contains_key(key),
            "{key} not set"
        );
        assert_ne!(va[key], vb[key], "{key} is shared between two runs");
    }
}

#[test]
fn invalid_run_ids_are_125_and_create_nothing() {
    let sb = Sandbox::new();
    sb.abra_servers();
    for bad in ["../x", "a/b", ".", "..", &"x".repeat(65), "a b"] {
        sb.assert("ccci-rundir")
            .args(["--run-id", bad, "--", "true"])
            .assert()
            .code(125)
            .stderr(predicate::str::contains(format!("{bad:?}")));
        sb.assert("ccci-rundir")
            .env("CCCI_RUN_ID", bad)
            .args(["--", "true"])
            .assert()
            .code(125);
        assert!(!exists(&sb.runs_dir()), "{bad:?}: the runs dir was created");
    }
}

#[test]
fn run_id_falls_back_to_drone_then_to_a_manual_id() {
    let sb = Sandbox::new();
    sb.abra_servers();
    let id = |env: &[(&str, &str)]| {
        let mut cmd = sb.assert("ccci-rundir");
        cmd.args(["--", "env"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        vars(&cmd.assert().success().get_output().stdout)["CCCI_RUN_ID"].clone()
    };
    assert_eq!(id(&[("DRONE_BUILD_NUMBER", "280")]), "280");
    assert_eq!(
        id(&[("CCCI_RUN_ID", "r1"), ("DRONE_BUILD_NUMBER", "280")]),
        "r1"
    );
    let manual = id(&[]);
    let parts: Vec<&str> = manual.split('-').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "manual"
            && parts[1..].iter().all(|p| p.parse::<u64>().is_ok()),
        "{manual}"
    );
}

/// docs/environment.md: a variable set to the empty string counts as unset — clap's
/// `env =` alone would take the empty value (an empty path, an empty run id).
#[test]
fn empty_variables_count_as_unset() {
    let sb = Sandbox::new();
    let home = sb.path("home");
    fs::create_dir_all(home.join(".abra/servers")).unwrap();
    let out = sb
        .assert("ccci-rundir")
        .env("CCCI_RUN_ID", "")
        .env("DRONE_BUILD_NUMBER", "281")
        .env("CCCI_CANONICAL_ABRA_DIR", "")
        .env("HOME", &home)
        .args(["--print", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let vars: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(vars["CCCI_RUN_ID"], "281", "{vars}");
    let run_dir = sb.runs_dir().join("281");
    assert_eq!(vars["CCCI_RUN_DIR"], run_dir.to_str().unwrap(), "{vars}");
    assert_eq!(
        fs::read_link(run_dir.join("abra/servers")).unwrap(),
        home.join(".abra/servers")
    );
}

#[test]
fn print_is_shell_evaluable_even_for_awkward_paths_and_json() {
    let sb = Sandbox::new();
    sb.abra_servers();
    let runs = sb.path("it's a \"runs\" dir $HOME");
    let out = sb
        .assert("ccci-rundir")
        .env("CCCI_RUNS_DIR", &runs)
        .args(["--run-id", "9", "--print"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let script = "eval \"$1\"; printf '%s' \"$ABRA_DIR\"";
    let evaluated = Command::new("sh")
        .args(["-c", script, "sh", &String::from_utf8(out).unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(evaluated.stdout).unwrap(),
        runs.join("9/abra").display().to_string()
    );
    // --print does not keep the run: the same id can start right away.
    sb.assert("ccci-rundir")
        .env("CCCI_RUNS_DIR", &runs)
        .args(["--run-id", "9", "--", "true"])
        .assert()
        .success();

    let out = sb
        .assert("ccci-rundir")
        .args(["--run-id", "9", "--print", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["CCCI_RUN_ID"], "9");
    assert!(
        doc["CCCI_DEPLOY_COUNT_FILE"]
            .as_str()
            .unwrap()
            .ends_with("/9/state/deploys")
    );
}

#[test]
fn usage_errors_are_125() {
    let sb = Sandbox::new();
    for args in [
        &["--nope", "--", "true"][..],
        &[],
        &["--print", "--", "true"],
        &["--json", "--", "true"],
    ] {
        sb.assert("ccci-rundir").args(args).assert().code(125);
    }
    sb.abra_servers();
    sb.assert("ccci-rundir")
        .args(["--", "/nonexistent/cmd"])
        .assert()
        .code(127);
}

#[test]
fn modes_are_0755_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.abra_servers();
    let mut cmd =
        crate::support::sh_with("ccci-rundir", "umask 077; exec \"$0\" --run-id u -- true");
    cmd.env("CCCI_RUNS_DIR", sb.runs_dir())
        .env("CCCI_CANONICAL_ABRA_DIR", sb.abra_dir());
    assert!(cmd.status().unwrap().success());
    for dir in ["", "u", "u/abra", "u/abra/recipes", "u/state"] {
        let mode = fs::metadata(sb.runs_dir().join(dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755, "{dir}");
    }
}
