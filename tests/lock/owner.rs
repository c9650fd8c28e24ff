//! Only the lock dir's owner can lock (issue 12 point 1): lockfiles are 0600, an old
//! 0644 one is retired at once, and another user's process holding one cannot block a run.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use predicates::prelude::*;

use super::{D, as_nobody, old_lockfile, reachable_sandbox};
use crate::support::{Background, require_root};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn lockfiles_are_made_0600_and_another_user_cannot_lock_them() {
    if !require_root("lockfiles_are_made_0600_and_another_user_cannot_lock_them") {
        return;
    }
    let sb = reachable_sandbox();
    sb.abra_servers();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .success();
    assert_eq!(mode(&sb.lockfile(D)), 0o600);
    let lockfile = sb.lockfile(D).display().to_string();
    as_nobody(&format!("flock -n '{lockfile}' true"))
        .output()
        .map(|out| {
            assert!(!out.status.success(), "another user locked {lockfile}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Permission denied"), "{err}");
        })
        .unwrap();
    sb.assert("ccci-rundir")
        .args(["--run-id", "r1", "--", "true"])
        .assert()
        .success();
    let run_lock = sb.runs_dir().join("r1/.run.lock");
    assert_eq!(mode(&run_lock), 0o600);
}

#[test]
fn an_old_0644_lockfile_held_by_another_user_is_retired() {
    if !require_root("an_old_0644_lockfile_held_by_another_user_is_retired") {
        return;
    }
    // Exclusive or shared: either blocks a run's LOCK_EX.
    for kind in ["-x", "-s"] {
        squatted_lockfile_is_replaced(kind);
    }
    // The same for a run's `.run.lock`.
    let sb = reachable_sandbox();
    sb.abra_servers();
    sb.assert("ccci-rundir")
        .args(["--run-id", "r1", "--", "true"])
        .assert()
        .success();
    let run_lock = sb.runs_dir().join("r1/.run.lock");
    fs::set_permissions(&run_lock, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(sb.runs_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(sb.runs_dir().join("r1"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec flock -s '{}' sh -c 'echo squatting >&2; exec sleep 1000'",
        run_lock.display()
    )));
    squatter.wait_for("squatting");
    sb.assert("ccci-rundir")
        .args(["--run-id", "r1", "--", "true"])
        .assert()
        .success();
}

fn squatted_lockfile_is_replaced(kind: &str) {
    let sb = reachable_sandbox();
    // As an older build left it: ours, 0644, so anyone may open it read-only.
    old_lockfile(&sb.lockfile(D));
    let old = fs::metadata(sb.lockfile(D)).unwrap().ino();
    let lockfile = sb.lockfile(D).display().to_string();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec flock {kind} '{lockfile}' sh -c 'echo squatting >&2; exec sleep 1000'"
    )));
    squatter.wait_for("squatting");

    // Root's run goes in, warned; the squatter holds a dead inode.
    let ran = format!("echo in > '{}'", sb.path("ran").display());
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "sh", "-c", &ran])
        .assert()
        .success()
        .stderr(predicate::str::contains("retired"));
    assert_eq!(fs::read_to_string(sb.path("ran")).unwrap(), "in\n");
    let now = fs::metadata(sb.lockfile(D)).unwrap();
    assert_ne!(
        now.ino(),
        old,
        "{kind}: the squatted lockfile is still in place"
    );
    assert_eq!(now.permissions().mode() & 0o777, 0o600);
    // Nothing else was left in the lock dir: no temporary name, only where retirers take
    // turns.
    assert_eq!(
        crate::support::list(&sb.lock_dir()),
        [".retire.lock", &format!("cc-ci-app-{D}.lock")]
    );
    // A second run does not wait for the squatter through the replaced inode either.
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .assert()
        .success();
    assert!(squatter.child.try_wait().unwrap().is_none());
}

#[test]
fn another_users_descriptor_opened_before_the_chmod_cannot_block_a_run() {
    if !require_root("another_users_descriptor_opened_before_the_chmod_cannot_block_a_run") {
        return;
    }
    let sb = reachable_sandbox();
    old_lockfile(&sb.lockfile(D));
    let lockfile = sb.lockfile(D).display().to_string();
    let go = sb.path("go");
    fs::write(&go, "").unwrap();
    fs::set_permissions(&go, fs::Permissions::from_mode(0o666)).unwrap();
    // Opens it while it is 0644, waits until told, then locks through that descriptor.
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec 3<'{lockfile}'; echo opened >&2; \
         while ! grep -q go '{go}'; do sleep 0.01; done; \
         flock -x 3; echo squatting >&2; exec sleep 1000",
        go = go.display()
    )));
    squatter.wait_for("opened");
    // The first tool that opens it retires it: a fresh 0600 lockfile takes its name.
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .success();
    assert_eq!(mode(&sb.lockfile(D)), 0o600);
    fs::write(&go, "go").unwrap();
    squatter.wait_for("squatting");
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .assert()
        .success();
}

#[test]
fn another_user_holding_a_lockfile_removed_by_hand_is_not_waited_for() {
    if !require_root("another_user_holding_a_lockfile_removed_by_hand_is_not_waited_for") {
        return;
    }
    let sb = reachable_sandbox();
    old_lockfile(&sb.lockfile(D));
    let lockfile = sb.lockfile(D).display().to_string();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec flock -x '{lockfile}' sh -c 'echo squatting >&2; exec sleep 1000'"
    )));
    squatter.wait_for("squatting");
    // An operator removes it by hand: a run holding a removed lockfile is waited for,
    // but this holder cannot be a run.
    fs::remove_file(sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .assert()
        .success();
    assert!(squatter.child.try_wait().unwrap().is_none());
}

#[test]
fn runs_that_retire_one_old_lockfile_at_once_never_overlap() {
    // Several runs of one domain start together on an old lockfile another user holds:
    // each wants to retire it. Two retirers must never trade a live lockfile away
    // (adversary finding F9): enter/leave marks never overlap.
    if !require_root("runs_that_retire_one_old_lockfile_at_once_never_overlap") {
        return;
    }
    let sb = reachable_sandbox();
    let log = sb.path("log");
    for round in 0..25 {
        let d = format!("r{round}.example");
        let lockfile = sb.lockfile(&d);
        old_lockfile(&lockfile);
        let mut squatter = Background::spawn(as_nobody(&format!(
            "exec flock -x '{}' sh -c 'echo squatting >&2; exec sleep 1000'",
            lockfile.display()
        )));
        squatter.wait_for("squatting");
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let mut cmd = sb.cmd("ccci-lock");
                cmd.args(["-w", "20", &d, "--", "sh", "-c"]).arg(format!(
                    "echo 'enter {round}.{i}' >> '{l}'; sleep 0.02; echo 'leave {round}.{i}' >> '{l}'",
                    l = log.display()
                ));
                Background::spawn(cmd)
            })
            .collect();
        for run in runs {
            let (status, lines) = run.finish();
            assert!(status.success(), "round {round}: {lines:?}");
        }
        drop(squatter);
    }
    let log = fs::read_to_string(&log).unwrap();
    assert_eq!(crate::support::assert_no_overlap(&log), 100);
}

#[test]
fn retirers_take_turns_on_the_lock_dirs_retire_lock() {
    // Between its look at the path and its exchange, a retirer must be alone: while
    // another holds `.retire.lock`, it waits in flock(2) on it, and the old lockfile
    // stays where it is until that one lets go.
    if !require_root("retirers_take_turns_on_the_lock_dirs_retire_lock") {
        return;
    }
    let sb = reachable_sandbox();
    old_lockfile(&sb.lockfile(D));
    let old = fs::metadata(sb.lockfile(D)).unwrap().ino();
    let turn = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(sb.lock_dir().join(".retire.lock"))
            .unwrap()
    };
    turn.lock().unwrap();
    let mut run = sb.cmd("ccci-lock");
    run.args([D, "--", "true"]);
    let run = Background::spawn(run);
    crate::support::wait_until_blocked_on(&sb.lock_dir().join(".retire.lock"));
    assert_eq!(fs::metadata(sb.lockfile(D)).unwrap().ino(), old);
    drop(turn);
    let (status, lines) = run.finish();
    assert!(status.success(), "{lines:?}");
    assert_ne!(fs::metadata(sb.lockfile(D)).unwrap().ino(), old);
}
