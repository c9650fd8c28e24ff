//! The lock rule: `up` and `down` only under the domain's app lock and in a run dir (78
//! otherwise), checked by reading, never by probing the caller's lock.

use predicates::prelude::*;

use crate::support::{Sandbox, output_within, text};
use crate::swarm::{self};

#[test]
fn up_and_down_outside_the_lock_or_run_dir_are_78() {
    let sb = Sandbox::new();
    let d = swarm::domain("t3");
    // No lock at all.
    for sub in [&["up", &d, "--recipe", "two-services"][..], &["down", &d]] {
        sb.assert("ccci-deploy")
            .args(sub)
            .env("CCCI_DEPLOY_COUNT_FILE", sb.path("deploys"))
            .assert()
            .code(78)
            .stderr(predicate::str::contains(format!(
                "ccci-deploy: not holding the app lock for {d} — run under 'ccci-lock {d} -- ...'"
            )));
    }
    // Under the lock of another domain: still not ours.
    let other = swarm::domain("t3");
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([&other, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["down", &d]);
    assert_eq!(cmd.status().unwrap().code(), Some(78));
    // Under the lock, but not in a run dir: nowhere to count the deploy.
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([&d, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["up", &d, "--recipe", "two-services"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("CCCI_DEPLOY_COUNT_FILE"));
    assert!(!sb.path("deploys").exists(), "counted outside the lock");
}

#[test]
fn the_lock_rule_only_reads_and_wants_an_exclusive_lock() {
    let sb = Sandbox::new();
    let d = swarm::domain("ta");
    std::fs::create_dir_all(sb.lock_dir()).unwrap();
    let lockfile = sb.lockfile(&d);
    std::fs::write(&lockfile, "").unwrap();
    // fd 9 holds only a shared lock: not the app lock, and the check must not touch it
    // (a LOCK_EX|LOCK_NB probe would drop or convert it).
    let script = format!(
        "exec 9<>'{l}'; flock -s 9; CCCI_LOCK_FD=9 CCCI_LOCK_DOMAIN={d} \"$0\" down {d}; echo rc=$?; \
         flock -n -x '{l}' true; echo other=$?; \
         exec 8<>'{l}'; CCCI_LOCK_FD=8 CCCI_LOCK_DOMAIN={d} \"$0\" down {d}; echo fresh=$?",
        l = lockfile.display()
    );
    let mut cmd = crate::support::sh_with("ccci-deploy", &script);
    cmd.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
    let out = output_within(cmd);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rc=78"), "{stdout}");
    assert!(
        stdout.contains("other=1"),
        "the caller's shared lock was dropped: {stdout}"
    );
    // A descriptor on the right file that holds nothing proves nothing either.
    assert!(stdout.contains("fresh=78"), "{stdout}");
}
