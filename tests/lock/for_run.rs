//! A run's dependencies (`ccci-lock --for-run`) and the lock rule without descriptor
//! inheritance: cc-ci's harness is a Python program whose `subprocess` closes every
//! descriptor but 0–2 in what it starts, and deploys each cold dependency as an app of its
//! own, under that app's lock, for the rest of the run.

use std::time::{Duration, Instant};

use super::D;
use crate::support::{Background, PATIENCE, Sandbox, assert_no_overlap, bin};

const DEP: &str = "keyc-0a1b2c.ci.example.org";

/// The top of the harnesses below: Python, starting every tool with `subprocess` defaults
/// (`close_fds=True`: no lock descriptor reaches them), reading their stdout (and with
/// `tool_captured` their stderr too) to its end.
const PRELUDE: &str = r#"
import subprocess, sys
lock, deploy, marks = sys.argv[1], sys.argv[2], sys.argv[3]
def say(line):
    sys.stderr.write(line + "\n"); sys.stderr.flush()
def mark(line):
    with open(marks, "a") as f: f.write(line + "\n")
def tool(*argv):
    # stdout read to its end; stderr streams, as a CI log shows it.
    return subprocess.run(list(argv), stdout=subprocess.PIPE).returncode
def tool_captured(*argv):
    r = subprocess.run(list(argv), capture_output=True, text=True)
    sys.stderr.write(r.stderr); sys.stderr.flush()
    return r.returncode
"#;

/// `ccci-lock <app> -- python3 -c <PRELUDE + body>` in the background.
fn python_run(sb: &Sandbox, app: &str, body: &str) -> Background {
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([app, "--", "python3", "-c", &format!("{PRELUDE}\n{body}")])
        .arg(bin("ccci-lock"))
        .arg(bin("ccci-deploy"))
        .arg(sb.path("marks"));
    Background::spawn(cmd)
}

/// Whether anything holds an exclusive flock on `path` (`flock(1)`, not our code).
fn held(path: &std::path::Path) -> bool {
    let status = std::process::Command::new("flock")
        .args(["-n", "-s"])
        .arg(path)
        .arg("true")
        .status()
        .expect("flock(1)");
    !status.success()
}

/// Wait until nothing holds `path` any more.
fn wait_until_free(path: &std::path::Path, what: &str) {
    let end = Instant::now() + PATIENCE;
    while held(path) {
        assert!(
            Instant::now() < end,
            "{what}: {} still held",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_dependency_is_kept_until_the_harness_ends_and_released_then() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    let mut run = python_run(
        &sb,
        D,
        &format!(
            "say('for-run %d' % tool_captured(lock, '--for-run', '{DEP}'))\nopen('{}').read()\nsay('harness done')",
            gate.path.display()
        ),
    );
    let line = run.wait_for("for-run ");
    // 0, and returned although the keeper lives on: it let go of the pipe we read.
    assert_eq!(line, "for-run 0", "{:?}", run.seen);
    assert!(
        run.seen.iter().any(|l| l.contains(&format!(
            "== app lock: acquired {DEP} for the rest of this run"
        ))),
        "{:?}",
        run.seen
    );
    assert!(held(&sb.lockfile(DEP)), "the dependency is not held");
    sb.assert("ccci-lock")
        .args(["--status", DEP])
        .assert()
        .code(1);
    gate.release();
    let (status, seen) = run.finish();
    assert!(status.success(), "{seen:?}");
    wait_until_free(&sb.lockfile(DEP), "after the harness ended");
}

#[test]
fn a_killed_harness_releases_its_dependency() {
    let sb = Sandbox::new();
    let mut run = python_run(
        &sb,
        D,
        &format!(
            "say('for-run %d' % tool(lock, '--for-run', '{DEP}'))\nimport time\nwhile True: time.sleep(1)"
        ),
    );
    assert_eq!(run.wait_for("for-run "), "for-run 0");
    assert!(held(&sb.lockfile(DEP)));
    // ccci-lock exec'd the harness: its pid is the run's top.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, _) = run.finish();
    assert!(!status.success());
    wait_until_free(&sb.lockfile(DEP), "after the harness was killed");
    wait_until_free(&sb.lockfile(D), "after the harness was killed");
}

#[test]
fn two_runs_needing_one_dependency_serialize_visibly() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    let body = |name: &str, wait: &str| {
        format!(
            "rc = tool(lock, '--for-run', '{DEP}')\nmark('enter {name}')\nsay('{name} holds %d' % rc)\n{wait}\nmark('leave {name}')"
        )
    };
    let mut a = python_run(
        &sb,
        "a.ci.example.org",
        &body("a", &format!("open('{}').read()", gate.path.display())),
    );
    assert_eq!(a.wait_for("a holds"), "a holds 0");
    let mut b = python_run(&sb, "b.ci.example.org", &body("b", ""));
    // b's keeper names a's keeper, the holder of the dependency.
    let waiting = b.wait_for(&format!("== app lock: another run of {DEP} in flight"));
    assert!(waiting.contains("kept for pid"), "{waiting}");
    assert!(
        !sb.read("marks").contains("enter b"),
        "b went in while a held {DEP}"
    );
    gate.release();
    assert_eq!(b.wait_for("b holds"), "b holds 0");
    let (sa, _) = a.finish();
    let (sb_status, seen) = b.finish();
    assert!(sa.success() && sb_status.success(), "{seen:?}");
    let marks = sb.read("marks");
    assert_eq!(assert_no_overlap(&marks), 2, "{marks}");
    assert!(marks.find("leave a") < marks.find("enter b"), "{marks}");
}

#[test]
fn a_dependency_cycle_d_e_d_never_waits_for_itself() {
    let sb = Sandbox::new();
    // The run's app is D; its dependency E needs D again; a nested `ccci-lock` of either
    // runs at once (-n: a wait would be 75).
    let mut run = python_run(
        &sb,
        D,
        &format!(
            "say('e %d' % tool(lock, '--for-run', '{DEP}'))\n\
             say('d %d' % tool(lock, '--for-run', '{D}'))\n\
             say('e again %d' % tool(lock, '--for-run', '{DEP}'))\n\
             say('nested %d' % tool(lock, '-n', '{DEP}', '--', 'true'))"
        ),
    );
    let (status, seen) = {
        run.wait_for("nested ");
        run.finish()
    };
    assert!(status.success(), "{seen:?}");
    for line in ["e 0", "d 0", "e again 0", "nested 0"] {
        assert!(seen.iter().any(|l| l == line), "{line}: {seen:?}");
    }
    assert!(
        seen.iter().any(|l| l.contains(&format!(
            "== app lock: {D} is already held by this run (pid"
        ))),
        "{seen:?}"
    );
}

#[test]
fn for_run_outside_a_run_is_125_and_holds_nothing() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .args(["--for-run", DEP])
        .assert()
        .code(125)
        .stderr(predicates::str::contains("not inside a run"));
    assert!(!held(&sb.lockfile(DEP)));
    sb.assert("ccci-lock")
        .args(["--for-run", DEP, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicates::str::contains("--for-run takes no command"));
}

#[test]
fn deploy_accepts_a_lock_held_above_it_or_kept_for_its_run_and_refuses_another_run_s() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    // No CCCI_DEPLOY_COUNT_FILE: a caller that passes the lock rule stops at the next
    // check, with its own message, before anything touches docker.
    let past_the_rule = "CCCI_DEPLOY_COUNT_FILE is not set";
    let mut a = python_run(
        &sb,
        D,
        &format!(
            "tool(deploy, 'up', '{D}', '--recipe', 'two-services')\n\
             tool(lock, '--for-run', '{DEP}')\n\
             tool(deploy, 'up', '{DEP}', '--recipe', 'two-services')\n\
             say('a ready')\nopen('{}').read()",
            gate.path.display()
        ),
    );
    a.wait_for("a ready");
    let rule_lines: Vec<&String> = a
        .seen
        .iter()
        .filter(|l| l.starts_with("ccci-deploy:"))
        .collect();
    assert_eq!(rule_lines.len(), 2, "{:?}", a.seen);
    assert!(
        rule_lines.iter().all(|l| l.contains(past_the_rule)),
        "{rule_lines:?}"
    );
    // Another run, under its own app's lock: A's dependency is not its to deploy, from
    // Python or from a shell that holds a descriptor of its own.
    let mut b = python_run(
        &sb,
        "b.ci.example.org",
        &format!("say('b %d' % tool(deploy, 'down', '{DEP}'))"),
    );
    assert_eq!(b.wait_for("b "), "b 78");
    assert!(
        b.seen
            .iter()
            .any(|l| l.contains(&format!("not holding the app lock for {DEP}"))),
        "{:?}",
        b.seen
    );
    gate.release();
    assert!(a.finish().0.success());
}
