//! ccci-janitor against a real swarm (../shared/spec/janitor.md).
//!
//! The swarm is shared with every other test running at the same time, each with its own
//! lock dir: a janitor here must only ever be eligible for this test's own domains, so
//! every test passes an allowlist naming exactly them.

mod switch;

use std::fs;
use std::process::Command;

use crate::support::{
    Background, DEPLOY_PATIENCE, bin, output_in, output_within, stack, text, write_executable,
};
use crate::swarm::{self, App, leftovers};

/// An allowlist naming exactly these domains.
fn only(domains: &[&str]) -> String {
    let alts: Vec<String> = domains.iter().map(|d| regex_escape(d)).collect();
    format!("^({})$", alts.join("|"))
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

impl App {
    /// Deploy `domain` through the real chain and leave it up, as a crashed run would.
    fn orphan(&self, run: &str, domain: &str) {
        let up = format!("\"$DEPLOY\" up {domain} --recipe two-services --timeout 2m");
        let out = output_in(self.chain(run, domain, &up), DEPLOY_PATIENCE);
        assert!(
            out.status.success(),
            "deploy of {domain}: {}",
            text(&out.stderr)
        );
    }

    fn janitor(&self, allow: &str, args: &[&str]) -> Command {
        let mut cmd = self.sb.cmd("ccci-janitor");
        cmd.env("CCCI_RUN_APP_RE", allow).args(args);
        cmd
    }

    fn env_file(&self, domain: &str) -> std::path::PathBuf {
        self.sb
            .abra_dir()
            .join(format!("servers/default/{domain}.env"))
    }
}

/// A janitor pass to its end: a reap waits for the stack's containers to stop, which on a
/// loaded machine takes longer than the suite's usual patience.
fn pass_within(cmd: Command) -> std::process::Output {
    crate::support::output_in(cmd, crate::support::DEPLOY_PATIENCE)
}

#[test]
fn an_orphan_is_reaped_completely_and_its_lockfile_removed() {
    if !swarm::available("an_orphan_is_reaped_completely_and_its_lockfile_removed") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j1");
    app.orphan("1", &d);
    assert!(app.sb.lockfile(&d).exists() && !leftovers(&stack(&d)).is_empty());
    let metrics = app.sb.path("janitor.prom");
    let out = output_within({
        let mut c = app.janitor(&only(&[&d]), &["--json", "--metrics-file"]);
        c.arg(&metrics);
        c
    });
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("ccci-janitor: reaped {d} (removed 2 services, 1 volume, 1 secret, 1 config, 1 network, 1 env file)")), "{err}");
    assert!(
        err.contains("== janitor: 1 reaped, 0 tidied, 0 left (0 stale), "),
        "{err}"
    );
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
    assert!(!app.env_file(&d).exists());
    assert!(
        !app.sb.lockfile(&d).exists(),
        "the lockfile outlived the reap"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["domains"][0]["result"], "reaped");
    assert_eq!(doc["domains"][0]["removed"]["volumes"], 1);
    assert!(
        fs::read_to_string(&metrics)
            .unwrap()
            .contains("ccci_janitor_domains{result=\"reaped\"} 1\n")
    );
}

#[test]
fn a_live_run_and_a_stale_lock_are_left_and_the_stale_one_named() {
    if !swarm::available("a_live_run_and_a_stale_lock_are_left_and_the_stale_one_named") {
        return;
    }
    let mut app = App::new();
    let (live, stale) = (app.domain("j2"), app.domain("j2"));
    app.orphan("2", &live);
    // A live run: a real process holds the lock.
    let gate = app.sb.fifo("gate");
    let holder = crate::lock::hold_until(&app.sb, &live, &gate);
    // A stale one: held by flock(1) with metadata saying it started 3 hours ago. (On a
    // lockfile made 0600, as ccci makes them: flock(1) would create a missing one 0644,
    // which ccci retires as an older build's.)
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(app.sb.lockfile(&stale))
            .unwrap();
    }
    let gate2 = app.sb.fifo("gate2");
    let mut flock = Command::new("flock");
    flock.arg(app.sb.lockfile(&stale)).args([
        "sh",
        "-c",
        &format!("echo held >&2; read x < '{}'", gate2.path.display()),
    ]);
    let mut flock = Background::spawn(flock);
    flock.wait_for("held");
    let three_hours_ago = Command::new("date")
        .args(["-u", "-d", "3 hours ago", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let meta = format!(
        r#"{{"version":1,"pid":{},"run_id":"r9","started_at":"{}","tool":"ccci-lock"}}"#,
        flock.pid(),
        text(&three_hours_ago.stdout).trim()
    );
    fs::write(app.sb.lockfile(&stale), meta).unwrap();
    let before = leftovers(&stack(&live));

    let out = pass_within(app.janitor(&only(&[&live, &stale]), &[]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("live run, leaving it: {live}")),
        "{err}"
    );
    let (pid, held) = (
        flock.pid(),
        format!("possible leaked run: {stale} held for 3h"),
    );
    let by = format!("by pid {pid} (run r9); lockfile open in: {pid} (flock)");
    let warning = err
        .lines()
        .find(|l| l.contains(&held))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        warning.contains(&by) && !warning.contains("(ccci-janitor)"),
        "{warning}"
    );
    assert!(
        err.contains("0 reaped, 0 tidied, 2 left (1 stale)"),
        "{err}"
    );
    assert_eq!(leftovers(&stack(&live)), before, "a live run was touched");
    assert!(app.env_file(&live).exists());
    gate.release();
    gate2.release();
    assert!(holder.finish().0.success());
}

#[test]
fn a_live_run_whose_lockfile_was_unlinked_is_left_and_named() {
    // Outside the protocol (an operator's `rm`), a run holds its domain through a lockfile
    // no one can see any more: a probe of the path would take a fresh lock at once. The
    // kernel's lock table still shows the run, and the janitor must leave its app alone.
    if !swarm::available("a_live_run_whose_lockfile_was_unlinked_is_left_and_named") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j10");
    app.orphan("10", &d);
    let gate = app.sb.fifo("gate");
    let holder = crate::lock::hold_until(&app.sb, &d, &gate);
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
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
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
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
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
        fs::write(app.env_file(d), "TYPE=two-services\n").unwrap();
    }
    let gate = app.sb.fifo("gate");
    let holder = crate::lock::hold_until(&app.sb, &live, &gate);
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
fn warm_and_non_matching_apps_are_never_touched_nor_given_a_lockfile() {
    if !swarm::available("warm_and_non_matching_apps_are_never_touched_nor_given_a_lockfile") {
        return;
    }
    let mut app = App::new();
    let ours = app.domain("j3");
    let hex = &ours[3..9];
    let warm = format!("warm-{hex}.ci.example.org");
    let other = format!("other{hex}.ci.example.org");
    app.track(&warm);
    app.track(&other);
    for (run, d) in [("3a", &warm), ("3b", &other)] {
        app.orphan(run, d);
        fs::remove_file(app.sb.lockfile(d)).unwrap();
    }
    let snapshot = |d: &str| (leftovers(&stack(d)), fs::read(app.env_file(d)).unwrap());
    let before = (snapshot(&warm), snapshot(&other));
    // The allowlist takes the warm app too: the denylist must still win.
    let out = pass_within(app.janitor(&only(&[&ours, &warm]), &[]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!((snapshot(&warm), snapshot(&other)), before, "{err}");
    assert!(
        !app.sb.lockfile(&warm).exists() && !app.sb.lockfile(&other).exists(),
        "an ignored app got a lockfile"
    );
    assert!(!err.contains(&warm) && !err.contains(&other), "{err}");
}

#[test]
fn a_lockless_run_stack_is_reaped_as_after_a_reboot() {
    if !swarm::available("a_lockless_run_stack_is_reaped_as_after_a_reboot") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j4");
    app.orphan("4", &d);
    fs::remove_dir_all(app.sb.lock_dir()).unwrap();
    let out = pass_within(app.janitor(&only(&[&d]), &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("reaped {d}")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
    assert!(!app.sb.lockfile(&d).exists());
}

#[test]
fn two_janitors_at_once_reap_an_orphan_exactly_once() {
    if !swarm::available("two_janitors_at_once_reap_an_orphan_exactly_once") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j5");
    app.orphan("5", &d);
    let allow = only(&[&d]);
    let janitors: Vec<_> = (0..2)
        .map(|_| Background::spawn(app.janitor(&allow, &[])))
        .collect();
    let mut reaped = 0;
    for j in janitors {
        let (status, lines) = j.finish();
        assert!(status.success(), "{lines:?}");
        reaped += lines
            .iter()
            .filter(|l| l.starts_with(&format!("ccci-janitor: reaped {d}")))
            .count();
    }
    assert_eq!(reaped, 1);
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
}

#[test]
fn a_run_that_starts_during_a_reap_waits_then_deploys_on_a_fresh_inode() {
    use std::os::unix::fs::MetadataExt;
    if !swarm::available("a_run_that_starts_during_a_reap_waits_then_deploys_on_a_fresh_inode") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j6");
    app.orphan("6", &d);
    let janitor = Background::spawn(app.janitor(&only(&[&d]), &[]));
    // The janitor writes its metadata once it holds the lock: then the reap is under way.
    let lockfile = app.sb.lockfile(&d);
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    let reaped_inode = loop {
        if fs::read_to_string(&lockfile)
            .unwrap_or_default()
            .contains("ccci-janitor")
        {
            break fs::metadata(&lockfile).unwrap().ino();
        }
        assert!(
            std::time::Instant::now() < end,
            "the janitor never held {d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let script = format!(
        "echo \"$(stat -L -c %i /proc/$$/fd/$CCCI_LOCK_FD) $(stat -c %i \"$CCCI_LOCK_FILE\")\" \
         > \"$CCCI_RUN_DIR/../inodes\"; \
         \"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" down {d}"
    );
    let mut run = Background::spawn(app.chain("6b", &d, &script));
    let waiting = run.wait_for("— waiting ==");
    assert!(waiting.contains("by ccci-janitor"), "{waiting}");
    let (status, lines) = janitor.finish_within(crate::support::DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");
    // It deploys and tears down (converging waits --stable-for): a deploy's patience.
    let (status, lines) = run.finish_within(crate::support::DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");
    // It woke on the inode the janitor unlinked, noticed, and reopened the path ...
    let reopened = format!("was unlinked while we waited on it (inode {reaped_inode}) — reopening");
    assert!(lines.iter().any(|l| l.contains(&reopened)), "{lines:?}");
    // ... so what it held was the file the path names (the number may be reused).
    let inodes = fs::read_to_string(app.sb.runs_dir().join("inodes")).unwrap();
    let (held, named) = inodes.trim().split_once(' ').unwrap();
    assert_eq!(held, named, "the run held a dead inode");
    assert!(
        lines.iter().any(|l| l.contains("converged in")),
        "{lines:?}"
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    if !swarm::available("a_dry_run_changes_nothing") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j7");
    app.orphan("7", &d);
    let listing = |app: &App| {
        (
            leftovers(&stack(&d)),
            crate::support::list(&app.sb.lock_dir()),
            fs::read(app.env_file(&d)).unwrap(),
            fs::read(app.sb.lockfile(&d)).unwrap(),
        )
    };
    let before = listing(&app);
    let out = pass_within(app.janitor(&only(&[&d]), &["--dry-run", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["domains"][0]["result"], "would-reap");
    assert_eq!(listing(&app), before);
}

#[test]
fn docker_unreachable_is_69_and_nothing_is_removed() {
    let mut app = App::new();
    let d = app.domain("j8");
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    fs::write(app.sb.lockfile(&d), "").unwrap();
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
    let mut cmd = app.janitor(&only(&[&d]), &[]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
    let out = output_within(cmd);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(app.sb.lockfile(&d).exists() && app.env_file(&d).exists());
}

#[test]
fn reaping_a_b_leaves_the_secrets_of_a_live_a_b_c() {
    if !swarm::available("reaping_a_b_leaves_the_secrets_of_a_live_a_b_c") {
        return;
    }
    let mut app = App::new();
    let ab = app.domain("j9");
    let abc = format!("{ab}.sub");
    app.track(&abc);
    app.orphan("9a", &ab);
    app.orphan("9b", &abc);
    let gate = app.sb.fifo("gate");
    let _holder = crate::lock::hold_until(&app.sb, &abc, &gate);
    let before = leftovers(&stack(&abc));
    let out = pass_within(app.janitor(&only(&[&ab, &abc]), &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("reaped {ab}")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        leftovers(&stack(&abc)),
        before,
        "a.b.c lost something to a.b's reap"
    );
    gate.release();
    let _ = bin("ccci-janitor");
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
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
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

#[test]
fn a_lock_no_descriptor_explains_stops_every_reap_and_shows_in_the_metrics() {
    // Issue 17 point 3: a flock on the lock dir's device that no process has a descriptor
    // for (held through a memory mapping (plain mmap(2): Python's own mmap keeps a dup)
    // after its descriptor was closed) could be any
    // domain's run, with its lockfile removed by hand. The janitor cannot prove D free:
    // it leaves D's app, says why, and the metric counts the untraced lock.
    if !swarm::available("a_lock_no_descriptor_explains_stops_every_reap_and_shows_in_the_metrics")
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j14");
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    let gate = app.sb.fifo("gate");
    let script = format!(
        "import ctypes, fcntl, os, sys\n\
         fd = os.open('{lockfile}', os.O_RDWR | os.O_CREAT, 0o600)\n\
         os.write(fd, b'x' * 4096)\n\
         fcntl.flock(fd, fcntl.LOCK_EX)\n\
         libc = ctypes.CDLL(None)\n\
         libc.mmap.restype = ctypes.c_void_p\n\
         libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n\
         assert libc.mmap(None, 4096, 1, 1, fd, 0) not in (None, ctypes.c_void_p(-1).value)\n\
         os.close(fd)\n\
         print('held', file=sys.stderr, flush=True)\n\
         open('{gate}').read()\n",
        lockfile = app.sb.lockfile(&d).display(),
        gate = gate.path.display()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let mut holder = Background::spawn(cmd);
    holder.wait_for("held");
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let metrics = app.sb.path("metrics.prom");
    let out = pass_within(app.janitor(
        &only(&[&d]),
        &["--json", "--metrics-file", metrics.to_str().unwrap()],
    ));
    let err = text(&out.stderr);
    // Nothing failed, but nothing could be reaped: an operator must look.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot prove {d} free, leaving it")),
        "{err}"
    );
    assert!(
        app.env_file(&d).exists(),
        "a possibly live run's app was reaped: {err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["domains"][0]["result"], "left", "{doc}");
    assert_eq!(
        doc["domains"][0]["untraced"][0]["pids"][0],
        holder.pid(),
        "{doc}"
    );
    let metrics = fs::read_to_string(&metrics).unwrap();
    assert!(
        metrics.contains("ccci_janitor_untraced_locks 1\n"),
        "{metrics}"
    );
    gate.release();
    assert!(holder.finish().0.success());
    // Another local user can take a flock the same way on any file of this filesystem it
    // may read: that cannot be a run (runs are the lock dir's owner's), and must not
    // stop the host's reaping.
    let readable = app.sb.path("readable");
    fs::write(&readable, "x".repeat(4096)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(app.sb.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).unwrap();
    let gate2 = app.sb.fifo("gate2");
    fs::set_permissions(&gate2.path, fs::Permissions::from_mode(0o666)).unwrap();
    let script = script
        .replace(
            &app.sb.lockfile(&d).display().to_string(),
            &readable.display().to_string(),
        )
        .replace("os.O_RDWR | os.O_CREAT, 0o600", "os.O_RDONLY")
        .replace("os.write(fd, b'x' * 4096)\n", "")
        .replace(
            &gate.path.display().to_string(),
            &gate2.path.display().to_string(),
        );
    let mut cmd = Command::new("setpriv");
    // Debian's python3: another user cannot reach a python under root's home (pyenv).
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        &script,
    ]);
    let mut other = Background::spawn(cmd);
    other.wait_for("held");
    // Once it is gone (and whatever another user holds), the same pass reaps D.
    let out = pass_within(app.janitor(&only(&[&d]), &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!app.env_file(&d).exists(), "{}", text(&out.stderr));
    gate2.release();
    assert!(other.finish().0.success());
}

#[test]
fn a_hung_docker_call_is_killed_and_the_janitor_lets_go_of_the_domain_at_once() {
    // Issue 17: with a docker that hangs on `secret rm`, the janitor hung for ever while
    // holding the orphan's lock, and a new run of that domain waited with it.
    if !swarm::available(
        "a_hung_docker_call_is_killed_and_the_janitor_lets_go_of_the_domain_at_once",
    ) {
        return;
    }
    let mut app = App::new();
    // Probed in this order: the one whose `secret rm` hangs, then one whose `secret rm`
    // waits at a gate, so the test looks while the pass is still going on.
    let (hung, next) = (app.domain("j14a"), app.domain("j14b"));
    let secret = |d: &str| format!("{}_pw_v1", stack(d));
    for d in [&hung, &next] {
        fs::write(app.env_file(d), "TYPE=two-services\n").unwrap();
        let create = Command::new("sh")
            .args(["-c", "echo x | docker secret create \"$0\" -", &secret(d)])
            .output()
            .unwrap();
        assert!(create.status.success(), "{}", text(&create.stderr));
    }
    let gate = app.sb.fifo("gate");
    let mark = app.sb.path("hang.mark");
    let mut cmd = app.janitor(&only(&[&hung, &next]), &["--timeout", "10s"]);
    cmd.env("CCCI_DOCKER", swarm::hang())
        .env("HANG_REAL", "docker")
        .env("HANG_MARK", &mark)
        .env("HANG_ON", format!("secret rm {}", secret(&hung)))
        .env("GATE_ON", format!("secret rm {}", secret(&next)))
        .env("GATE", &gate.path);
    let mut janitor = Background::spawn(cmd);
    let (_, line) = janitor.wait_for_any_within(
        std::time::Duration::from_secs(40),
        &[&format!("error reaping {hung}")],
    );
    assert!(
        line.contains(&format!(
            "secret rm {}` did not finish within ",
            secret(&hung)
        )) && line.ends_with("— killed"),
        "{line}"
    );
    // The pass went on to the next domain, and is held there ...
    swarm::wait_for_line(&mark, "gated", crate::support::PATIENCE);
    assert!(
        janitor.child.try_wait().unwrap().is_none(),
        "the pass ended"
    );
    // ... while a new run of the hung domain gets its lock at once.
    let lock = output_within({
        let mut c = app.sb.cmd("ccci-lock");
        c.args(["-n", &hung, "--", "true"]);
        c
    });
    assert!(lock.status.success(), "{}", text(&lock.stderr));
    // Nothing of the hung docker is left running: neither it nor the child it started.
    let hung_line = swarm::wait_for_line(&mark, "hung", crate::support::PATIENCE);
    for pid in hung_line.split_whitespace().skip(1) {
        assert!(!swarm::running(pid), "{pid} of {hung_line:?} still runs");
    }
    gate.release();
    let (status, lines) = janitor.finish();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("ccci-janitor: reaped {next}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(", 1 errors in ")),
        "{lines:?}"
    );
    // Left for the next pass: its lockfile, its .env and its secret are still there.
    assert!(app.sb.lockfile(&hung).exists() && app.env_file(&hung).exists());
    assert_eq!(
        leftovers(&stack(&hung)),
        [format!("secret {}", secret(&hung))]
    );
}

#[test]
fn a_docker_listing_that_hangs_ends_the_pass_within_its_bound_touching_nothing() {
    // Outside a reap, each call gets a minute, or --timeout when that is shorter.
    if !swarm::available(
        "a_docker_listing_that_hangs_ends_the_pass_within_its_bound_touching_nothing",
    ) {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j15");
    fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
    let mut cmd = app.janitor(&only(&[&d]), &["--timeout", "5s"]);
    cmd.env("CCCI_DOCKER", swarm::hang())
        .env("HANG_REAL", "docker")
        .env("HANG_MARK", app.sb.path("hang.mark"))
        .env("HANG_ON", "secret ls*");
    let (status, lines) = Background::spawn(cmd).finish_within(std::time::Duration::from_secs(40));
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("ccci-janitor: `")
            && l.contains(" secret ls --format ")
            && l.ends_with("` did not finish within 5s — killed")),
        "{lines:?}"
    );
    assert!(app.env_file(&d).exists(), "touched after a failed listing");
    assert!(
        !app.sb.lockfile(&d).exists(),
        "probed after a failed listing"
    );
}

#[test]
fn a_live_run_whose_lockfile_was_moved_or_renamed_by_hand_is_left() {
    // The operator tidies by hand: the held lockfile is moved into a directory under the
    // lock dir, into the lock dir's parent, or renamed in place. Nothing is "(deleted)",
    // and a probe of the path would take a fresh lock at once: the janitor must still see
    // the run, by the moved file's name or by the holder record inside the renamed one.
    if !swarm::available("a_live_run_whose_lockfile_was_moved_or_renamed_by_hand_is_left") {
        return;
    }
    let mut app = App::new();
    let moves: [&dyn Fn(&std::path::Path) -> std::path::PathBuf; 4] = [
        &|l| {
            let attic = l.parent().unwrap().join("old");
            fs::create_dir_all(&attic).unwrap();
            attic.join(l.file_name().unwrap())
        },
        &|l| {
            l.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join(l.file_name().unwrap())
        },
        &|l| l.with_extension("lock.bak"),
        // The whole lock dir moved aside (and a new one made in its place).
        &|l| {
            let dir = l.parent().unwrap();
            let aside = dir.with_extension("old");
            fs::rename(dir, &aside).unwrap();
            fs::create_dir(dir).unwrap();
            aside.join(l.file_name().unwrap())
        },
    ];
    for (i, to) in moves.iter().enumerate() {
        let d = app.domain(&format!("jv{i}"));
        fs::write(app.env_file(&d), "TYPE=two-services\n").unwrap();
        let gate = app.sb.fifo(&format!("gate{i}"));
        let holder = crate::lock::hold_until(&app.sb, &d, &gate);
        let lockfile = app.sb.lockfile(&d);
        let moved = to(&lockfile);
        if !moved.exists() {
            fs::rename(&lockfile, &moved).unwrap();
        }
        let out = pass_within(app.janitor(&only(&[&d]), &["--json"]));
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            app.env_file(&d).exists(),
            "a live run holding {} was reaped: {err}",
            moved.display()
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["domains"][0]["result"], "left", "{doc}");
        // And a new run of the domain waits for it, as for a removed lockfile.
        let mut newcomer = app.sb.cmd("ccci-lock");
        newcomer.args(["-n", &d, "--", "true"]);
        let out = output_within(newcomer);
        assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
        gate.release();
        assert!(holder.finish().0.success());
        let _ = fs::remove_file(&moved);
    }
}
