//! `ccci-rundir gc`: old free runs go, held runs stay, nothing outside a run is touched.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use predicates::prelude::*;

use crate::support::{Background, Sandbox, exists, require_root, wait_until_blocked_on};

/// Make a run dir look idle for ten days.
fn age(run: &Path) {
    super::age(run, "10 days ago");
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
    let held = super::run_holding(&sb, "held", &gate);
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
    // Only the kept runs, and the lock every gc marks its sweep with.
    assert_eq!(
        crate::support::list(&sb.runs_dir()),
        [".gc~.lock", "held", "new"],
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

#[test]
fn gc_never_touches_what_is_not_a_run() {
    // A mistyped --runs-dir (say /var/lib) must not lose anything: only directories with
    // a .run.lock of ours are runs, and gc never creates one.
    let sb = Sandbox::new();
    let runs = sb.runs_dir();
    for dir in ["postgresql/data", "docker", "gc~x"] {
        fs::create_dir_all(runs.join(dir)).unwrap();
    }
    fs::write(runs.join("postgresql/data/db"), "rows").unwrap();
    fs::write(runs.join("gc~x/keep"), "mine").unwrap();
    for dir in ["postgresql", "docker", "gc~x"] {
        age(&runs.join(dir));
    }
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d"])
        .assert()
        .success();
    assert_eq!(
        fs::read_to_string(runs.join("postgresql/data/db")).unwrap(),
        "rows"
    );
    assert_eq!(fs::read_to_string(runs.join("gc~x/keep")).unwrap(), "mine");
    assert!(!exists(&runs.join("docker/.run.lock")), "gc created a lock");
}

#[test]
fn a_run_id_started_again_is_not_idle() {
    let sb = Sandbox::new();
    sb.abra_servers();
    sb.assert("ccci-rundir")
        .args(["--run-id", "z", "--", "true"])
        .assert()
        .success();
    age(&sb.runs_dir().join("z"));
    sb.assert("ccci-rundir")
        .args(["--run-id", "z", "--print"])
        .assert()
        .success();
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d"])
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    assert!(exists(&sb.runs_dir().join("z/state")));
}

#[test]
fn a_run_started_while_gc_removes_its_id_waits_and_gets_a_fresh_dir() {
    let sb = Sandbox::new();
    sb.abra_servers();
    sb.assert("ccci-rundir")
        .args(["--run-id", "r", "--", "true"])
        .assert()
        .success();
    let run = sb.runs_dir().join("r");
    fs::write(run.join("state/old"), "from the old run").unwrap();
    // Play gc: hold the run lock with gc's metadata, rename the directory away, release.
    let gate = sb.fifo("gate");
    let trash = sb.runs_dir().join("gc~r~1");
    let mut gc = Command::new("flock");
    gc.arg(run.join(".run.lock")).args([
        "sh",
        "-c",
        &format!(
            "echo held >&2; read x < '{}'; mv '{}' '{}'",
            gate.path.display(),
            run.display(),
            trash.display()
        ),
    ]);
    let mut gc = Background::spawn(gc);
    gc.wait_for("held");
    let meta = format!(
        r#"{{"version":1,"pid":{},"tool":"ccci-rundir gc"}}"#,
        gc.pid()
    );
    fs::write(run.join(".run.lock"), meta).unwrap();
    let mut started = sb.cmd("ccci-rundir");
    started.args([
        "--run-id",
        "r",
        "--",
        "sh",
        "-c",
        "ls \"$CCCI_STATE_DIR\"; echo ran >&2",
    ]);
    let mut started = Background::spawn(started);
    wait_until_blocked_on(&run.join(".run.lock"));
    gate.release();
    assert!(gc.finish().0.success());
    started.wait_for("ran");
    let (status, lines) = started.finish();
    assert!(status.success(), "{lines:?}");
    assert!(
        run.join("state").is_dir() && !exists(&run.join("state/old")),
        "not a fresh directory"
    );
}

#[test]
fn two_gcs_at_once_remove_each_run_once_and_both_succeed() {
    let sb = Sandbox::new();
    sb.abra_servers();
    for id in ["a", "b", "c", "d", "e", "f"] {
        sb.assert("ccci-rundir")
            .args(["--run-id", id, "--", "true"])
            .assert()
            .success();
        age(&sb.runs_dir().join(id));
    }
    let gcs: Vec<_> = (0..2)
        .map(|_| {
            let mut gc = sb.cmd("ccci-rundir");
            gc.args(["gc", "--older-than", "1d"]);
            Background::spawn(gc)
        })
        .collect();
    for gc in gcs {
        let (status, lines) = gc.finish();
        assert!(status.success(), "{lines:?}");
    }
    assert_eq!(crate::support::list(&sb.runs_dir()), [".gc~.lock"]);
}

#[test]
fn nothing_mounted_inside_a_run_is_ever_emptied() {
    if !require_root("nothing_mounted_inside_a_run_is_ever_emptied") {
        return;
    }
    let sb = Sandbox::new();
    let servers = sb.abra_servers();
    fs::write(servers.join("app.env"), "precious").unwrap();
    sb.assert("ccci-rundir")
        .args(["--run-id", "m", "--", "true"])
        .assert()
        .success();
    let run = sb.runs_dir().join("m");
    let mount_point = run.join("state/m");
    fs::create_dir_all(&mount_point).unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&servers)
        .arg(&mount_point)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount --bind failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount_point.clone());
    // Run mode refuses to empty state/, gc refuses to remove the run: both say why.
    sb.assert("ccci-rundir")
        .args(["--run-id", "m", "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("mount point"));
    age(&run);
    sb.assert("ccci-rundir")
        .args(["gc", "--older-than", "1d"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mount point"));
    assert_eq!(
        fs::read_to_string(servers.join("app.env")).unwrap(),
        "precious"
    );
}

/// `ccci-rundir gc` and `ccci-rundir --run-id <id> -- sh -c <script> <round>` started
/// together, the run's stdout dropped; the run first on odd rounds.
fn race_gc_with_a_run(
    sb: &Sandbox,
    id: &str,
    script: &str,
    round: usize,
) -> ((ExitStatus, Vec<String>), (ExitStatus, Vec<String>)) {
    let mut gc = sb.cmd("ccci-rundir");
    gc.args(["gc", "--older-than", "7d"]).stdout(Stdio::null());
    let mut run = sb.cmd("ccci-rundir");
    run.args(["--run-id", id, "--", "sh", "-c", script, "sh"])
        .arg(round.to_string())
        .stdout(Stdio::null());
    let (gc, run) = if round.is_multiple_of(2) {
        let gc = Background::spawn(gc);
        (gc, Background::spawn(run))
    } else {
        let run = Background::spawn(run);
        (Background::spawn(gc), run)
    };
    (gc.finish(), run.finish())
}

#[test]
fn a_run_started_while_gc_judges_its_idle_id_waits_and_runs_in_a_fresh_dir() {
    // The race of issue 12 point 4: gc holds the run lock of an idle run while it decides
    // and removes, and a run of that id starting then took gc for a run in progress (125
    // naming gc's pid). Whichever wins, the run must run, in a directory that exists at
    // its path (its mark is there afterwards), laid out fresh (state/ empty).
    let sb = Sandbox::new();
    sb.abra_servers();
    let run = sb.runs_dir().join("old1");
    let script = r#"[ -z "$(ls -A "$CCCI_STATE_DIR")" ] || { echo "state/ not fresh" >&2; exit 3; }
        [ -L "$ABRA_DIR/servers" ] || { echo "no servers link" >&2; exit 3; }
        echo "$1" > "$CCCI_RUN_DIR/mark""#;
    for round in 0..100 {
        // An idle run of this id, whose last attempt left a file in state/.
        sb.assert("ccci-rundir")
            .args(["--run-id", "old1", "--", "sh", "-c"])
            .arg(r#"echo x > "$CCCI_STATE_DIR/left""#)
            .assert()
            .success();
        age(&run);
        let ((gc, gc_lines), (started, lines)) = race_gc_with_a_run(&sb, "old1", script, round);
        assert_eq!(started.code(), Some(0), "round {round}: {lines:?}");
        assert_eq!(gc.code(), Some(0), "round {round}: gc: {gc_lines:?}");
        assert_eq!(
            fs::read_to_string(run.join("mark")).ok().as_deref(),
            Some(format!("{round}\n").as_str()),
            "round {round}: the run's mark is not in {}",
            run.display()
        );
        assert!(!exists(&run.join("state/left")), "round {round}");
    }
}

#[test]
fn a_second_run_of_an_id_in_progress_is_refused_even_while_gc_sweeps() {
    // gc holding run locks for a moment must not turn a real run in progress into
    // something a second run of its id waits for: that one is still refused, naming the
    // first, and gc keeps the run however old.
    let sb = Sandbox::new();
    sb.abra_servers();
    let gate = sb.fifo("gate");
    let first = super::run_holding(&sb, "7", &gate);
    let refused = format!(
        "ccci-rundir: run 7 is already in progress (pid {})",
        first.pid()
    );
    for round in 0..20 {
        age(&sb.runs_dir().join("7"));
        let ((gc, gc_lines), (second, lines)) = race_gc_with_a_run(&sb, "7", "echo ran >&2", round);
        assert_eq!(second.code(), Some(125), "round {round}: {lines:?}");
        assert_eq!(lines, std::slice::from_ref(&refused), "round {round}");
        assert_eq!(gc.code(), Some(0), "round {round}: gc: {gc_lines:?}");
        assert!(
            exists(&sb.runs_dir().join("7/abra/servers")),
            "round {round}"
        );
    }
    gate.release();
    assert!(first.finish().0.success());
}
