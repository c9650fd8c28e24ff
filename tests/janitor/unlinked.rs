//! A live run whose lockfile was removed by hand is still found, through the kernel's lock
//! table: held by its command, by a child that outlived it, from another mount namespace,
//! through a detached bind mount, or unlinked while the pass reaps another domain.

use std::fs;
use std::process::Command;

use super::{live_run, only, pass_within, with_orphan};
use crate::support::{Background, bin, output_within, stack, text, write_executable};
use crate::swarm::{self, App, leftovers};

#[test]
fn a_live_run_whose_lockfile_was_unlinked_is_left_and_named() {
    // Outside the protocol (an operator's `rm`), a run holds its domain through a lockfile
    // no one can see any more: a probe of the path would take a fresh lock at once. The
    // kernel's lock table still shows the run, and the janitor must leave its app alone.
    if !swarm::available("a_live_run_whose_lockfile_was_unlinked_is_left_and_named") {
        return;
    }
    let (app, d) = with_orphan("j10");
    let (gate, holder) = live_run(&app, &d, "gate");
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let before = leftovers(&stack(&d));
    let line = format!(
        "live run, leaving it: {d} — but its lockfile was unlinked while held, by {} (sh)",
        holder.pid()
    );
    for args in [&["--dry-run"][..], &["--json"][..]] {
        let out = pass_within(app.janitor(&only(&[&d]), args));
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains(&line), "{args:?}: {err}");
        assert!(
            err.contains("0 reaped, 0 tidied, 1 left (1 stale)"),
            "{err}"
        );
        if args == ["--json"] {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["domains"][0]["result"], "left", "{doc}");
            assert_eq!(doc["domains"][0]["lockfile_unlinked"], true, "{doc}");
        }
    }
    assert_eq!(leftovers(&stack(&d)), before, "a live run was touched");
    assert!(app.env_file(&d).exists());
    assert!(
        !app.sb.lockfile(&d).exists(),
        "the janitor made a new lockfile"
    );
    gate.release();
    assert!(holder.finish().0.success());
}

/// The janitor's verdict on `d` in a `--json` pass that must leave it: `left`, found
/// through its unlinked lockfile, its `.env` (what a reap would remove first) still there,
/// and no new lockfile made for it.
fn assert_left_unlinked(app: &App, d: &str) -> serde_json::Value {
    let out = pass_within(app.janitor(&only(&[d]), &["--json"]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = doc["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == d)
        .unwrap_or_else(|| panic!("{d} not in {doc}"))
        .clone();
    assert_eq!(report["result"], "left", "{err}");
    assert_eq!(report["lockfile_unlinked"], true, "{err}");
    assert!(
        app.env_file(d).exists(),
        "a live run's app was reaped: {err}"
    );
    assert!(
        !app.sb.lockfile(d).exists(),
        "the janitor made a new lockfile"
    );
    report
}

#[test]
fn a_run_whose_command_exited_but_whose_child_holds_an_unlinked_lockfile_is_left() {
    // The command exits, its background child keeps the lock (lock.md, "lifetime"): the
    // kernel's lock table still names the command's pid, which is gone.
    if !swarm::available(
        "a_run_whose_command_exited_but_whose_child_holds_an_unlinked_lockfile_is_left",
    ) {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j11");
    app.env_only(&d);
    let gate = app.sb.fifo("gate");
    let mut cmd = app.sb.cmd("ccci-lock");
    cmd.args([&d, "--", "sh", "-c"]).arg(format!(
        "read x < '{}' >/dev/null 2>&1 & exit 0",
        gate.path.display()
    ));
    // Its process group: dropped, the child goes too.
    let mut run = Background::spawn(cmd);
    run.wait_for(&format!("== app lock: acquired {d}"));
    let command = run.child.wait().unwrap();
    assert!(command.success());
    let held = Command::new("flock")
        .arg("-n")
        .arg(app.sb.lockfile(&d))
        .arg("true")
        .status()
        .unwrap();
    assert!(!held.success(), "the child does not hold the lock");
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let report = assert_left_unlinked(&app, &d);
    assert_eq!(report["open_by"][0]["comm"], "sh", "{report}");
    gate.release();
}

#[test]
fn a_run_in_another_mount_namespace_whose_lockfile_was_unlinked_is_left() {
    // A run in a container sees the lock dir bind-mounted at another path: its
    // `/proc/<pid>/fd` link names the lockfile by that path, which means nothing here.
    if !swarm::available("a_run_in_another_mount_namespace_whose_lockfile_was_unlinked_is_left")
        || !crate::support::require_root(
            "a_run_in_another_mount_namespace_whose_lockfile_was_unlinked_is_left",
        )
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j12");
    app.env_only(&d);
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    // Here an empty directory; in the run's mount namespace, the lock dir.
    let alias = app.sb.path("container-locks");
    fs::create_dir_all(&alias).unwrap();
    let gate = app.sb.fifo("gate");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind '{}' '{alias}' && exec \"$0\" --lock-dir '{alias}' {d} -- sh -c \"read x < '{}'\"",
            app.sb.lock_dir().display(),
            gate.path.display(),
            alias = alias.display(),
        ))
        .arg(bin("ccci-lock"));
    let mut run = Background::spawn(cmd);
    run.wait_for(&format!("== app lock: acquired {d}"));
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let report = assert_left_unlinked(&app, &d);
    assert_eq!(report["open_by"][0]["pid"], run.pid(), "{report}");
    gate.release();
    assert!(run.finish().0.success());
}

#[test]
fn a_lockfile_unlinked_while_the_pass_reaps_another_domain_still_spares_its_run() {
    // The pass looks at the lock table once, at its start; reaps take long. An operator's
    // `rm` meanwhile must not let the janitor take a fresh lockfile and reap a live run.
    if !swarm::available(
        "a_lockfile_unlinked_while_the_pass_reaps_another_domain_still_spares_its_run",
    ) {
        return;
    }
    let mut app = App::new();
    // Probed in this order: the orphan first.
    let (orphan, live) = (app.domain("j13a"), app.domain("j13b"));
    for d in [&orphan, &live] {
        app.env_only(d);
    }
    let (gate, holder) = live_run(&app, &live, "gate");
    // Once the orphan's reap is under way (its `.env` gone), the operator's `rm`.
    let docker = app.sb.path("docker");
    write_executable(
        &docker,
        &format!(
            "#!/bin/sh\n[ -e '{}' ] || rm -f '{}'\nexec docker \"$@\"\n",
            app.env_file(&orphan).display(),
            app.sb.lockfile(&live).display()
        ),
    );
    let mut cmd = app.janitor(&only(&[&orphan, &live]), &["--json"]);
    cmd.env("CCCI_DOCKER", &docker);
    let out = output_within(cmd);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!app.env_file(&orphan).exists(), "{err}");
    assert!(!app.sb.lockfile(&live).exists(), "no rm happened: {err}");
    assert!(app.env_file(&live).exists(), "a live run was reaped: {err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["domains"][1]["domain"], live.as_str(), "{doc}");
    assert_eq!(doc["domains"][1]["result"], "left", "{doc}");
    assert_eq!(doc["domains"][1]["lockfile_unlinked"], true, "{doc}");
    gate.release();
    assert!(holder.finish().0.success());
}

#[test]
fn a_run_holding_through_a_detached_bind_mount_of_the_lock_dir_is_left() {
    // Issue 17 point 3: a run in another mount namespace locks D through a bind mount of
    // the lock dir; its background child keeps the lock after its command exits; the bind
    // goes (`umount -l`) and the lockfile is removed by hand. The child's descriptor now
    // shows `/cc-ci-app-D.lock (deleted)`, a path in a detached tree: by its name it is
    // still D's lockfile, and the live run's app must be left.
    if !swarm::available("a_run_holding_through_a_detached_bind_mount_of_the_lock_dir_is_left") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j13");
    app.env_only(&d);
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    let mnt = app.sb.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let gate = app.sb.fifo("gate");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind '{locks}' '{mnt}' && \
             CCCI_APP_LOCK_DIR='{mnt}' '{lock}' {d} -- sh -c \"read x < '{gate}' >/dev/null 2>&1 &\" && \
             umount -l '{mnt}' && echo detached >&2",
            locks = app.sb.lock_dir().display(),
            mnt = mnt.display(),
            lock = bin("ccci-lock").display(),
            gate = gate.path.display()
        ));
    crate::support::scrub(&mut cmd);
    let mut run = Background::spawn(cmd);
    run.wait_for("detached");
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let report = assert_left_unlinked(&app, &d);
    assert!(
        report["open_by"].as_array().is_some_and(|a| !a.is_empty()),
        "{report}"
    );
    gate.release();
    assert!(run.finish().0.success());
}
