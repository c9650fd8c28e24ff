//! A live switch from the old layer (issue 14, point 4): builds of the old Python harness
//! (`tests/fixtures/old-layer`: its lock on `<old dir>/cc-ci-app-<d>.lock`, its run-start
//! janitor) and ccci runs side by side on one swarm, with `CCCI_LEGACY_LOCK_DIR` set as
//! on a host that is switching. Neither janitor may reap the other's live run, two builds
//! of one domain — one of each kind — take turns, and once the setting goes, nothing of
//! it stays.
//!
//! Every janitor here, ccci's and the old one, is told exactly this test's domains.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use super::{only, pass_within, stack, text};
use crate::support::{
    Background, DEPLOY_PATIENCE, assert_no_overlap, list, output_in, scrub, wait_until_blocked_on,
};
use crate::swarm::{self, App, leftovers};

/// The old layer's stand-in.
fn old_layer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old-layer")
}

/// A host that is switching: the test swarm, a canonical abra tree, and the old layer's
/// lock dir, shared and sticky like `/run/lock`.
struct Switch {
    app: App,
    old_dir: PathBuf,
}

impl Switch {
    fn new() -> Switch {
        let app = App::new();
        let old_dir = app.sb.path("old-locks");
        fs::create_dir(&old_dir).unwrap();
        fs::set_permissions(&old_dir, fs::Permissions::from_mode(0o1777)).unwrap();
        Switch { app, old_dir }
    }

    /// A fresh domain of cc-ci's own shape, `<prefix>-<6 hex>.ci.commoninternet.net`.
    fn domain(&mut self, prefix: &str) -> String {
        let d = swarm::domain(prefix).replace(".ci.example.org", ".ci.commoninternet.net");
        self.app.track(&d);
        d
    }

    fn old_lockfile(&self, d: &str) -> PathBuf {
        self.old_dir.join(format!("cc-ci-app-{d}.lock"))
    }

    /// `old-layer ARGS` against this host; `$OLD` names it for scripts.
    fn old(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(old_layer());
        scrub(&mut cmd);
        cmd.args(args)
            .env("OLD", old_layer())
            .env("OLD_LOCK_DIR", &self.old_dir)
            .env("ABRA_DIR", self.app.sb.abra_dir());
        cmd
    }

    /// A build of the old layer: its lock on `d`, then `script`.
    fn old_run(&self, d: &str, script: &str) -> Command {
        self.old(&["lock", d, "--", "sh", "-c", script])
    }

    /// The old layer's run-start janitor, told only `allow`.
    fn old_janitor(&self, allow: &str) -> Command {
        let mut cmd = self.old(&["janitor"]);
        cmd.env("OLD_RUN_APP_RE", allow);
        cmd
    }

    /// A ccci build: the chain (`ccci-rundir -- ccci-lock d -- sh -c script`), switching.
    fn ccci_run(&self, run: &str, d: &str, script: &str) -> Command {
        let mut cmd = self.app.chain(run, d, script);
        cmd.env("CCCI_LEGACY_LOCK_DIR", &self.old_dir);
        cmd
    }

    /// ccci's janitor, switching, told only `allow`.
    fn janitor(&self, allow: &str, args: &[&str]) -> Command {
        let mut cmd = self.app.janitor(allow, args);
        cmd.env("CCCI_LEGACY_LOCK_DIR", &self.old_dir);
        cmd
    }
}

fn held(path: &std::path::Path) -> bool {
    !Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

#[test]
fn neither_janitor_reaps_the_other_layers_live_run_and_each_reaps_the_others_orphan() {
    if !swarm::available(
        "neither_janitor_reaps_the_other_layers_live_run_and_each_reaps_the_others_orphan",
    ) {
        return;
    }
    let mut sw = Switch::new();
    let (old_d, new_d) = (sw.domain("swo"), sw.domain("swn"));
    let allow = only(&[&old_d, &new_d]);
    // A build of the old layer, deployed, and one of ccci, deployed, both in flight.
    let old_gate = sw.app.sb.fifo("old-gate");
    let mut old = Background::spawn(sw.old_run(
        &old_d,
        &format!(
            "\"$OLD\" deploy {old_d} two-services && read x < '{}'",
            old_gate.path.display()
        ),
    ));
    old.wait_for_any_within(DEPLOY_PATIENCE, &[&format!("deployed {old_d}")]);
    let new_gate = sw.app.sb.fifo("new-gate");
    let mut new = Background::spawn(sw.ccci_run(
        "1",
        &new_d,
        &format!(
            "\"$DEPLOY\" up {new_d} --recipe two-services --timeout 2m && echo ccci-run-deployed >&2 && read x < '{}'",
            new_gate.path.display()
        ),
    ));
    new.wait_for_any_within(DEPLOY_PATIENCE, &["ccci-run-deployed"]);
    assert!(
        held(&sw.old_lockfile(&new_d)),
        "the ccci run does not hold the old lockfile"
    );
    let snapshot = |sw: &Switch| {
        [&old_d, &new_d].map(|d| {
            (
                leftovers(&stack(d)),
                fs::read(sw.app.env_file(d)).unwrap_or_default(),
            )
        })
    };
    let before = snapshot(&sw);
    assert!(
        before
            .iter()
            .all(|(left, env)| !left.is_empty() && !env.is_empty())
    );

    // ccci's janitor leaves both: the old build by its old lockfile.
    let out = pass_within(sw.janitor(&allow, &["--json"]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "live run of the old layer, leaving it: {old_d} (pid {} holds its old lockfile)",
            old.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("live run, leaving it: {new_d}")),
        "{err}"
    );
    assert!(
        err.contains("0 reaped, 0 tidied, 2 left (0 stale)"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |d: &str| {
        doc["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (&of(&old_d)["result"], &of(&old_d)["old_layer"]),
        (&"left".into(), &true.into())
    );
    assert_eq!(of(&new_d)["old_layer"], false);
    assert_eq!(snapshot(&sw), before, "a live run was touched: {err}");
    assert!(
        !sw.app.sb.lockfile(&old_d).exists(),
        "the janitor's probe left a lockfile for the old build's domain"
    );
    // And so does a dry run.
    let out = pass_within(sw.janitor(&allow, &["--dry-run"]));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("live run of the old layer, leaving it: {old_d}")),
        "{err}"
    );
    assert!(err.contains("2 left"), "{err}");

    // The old layer's janitor leaves both: the ccci run by the old lockfile it holds.
    let out = pass_within(sw.old_janitor(&allow));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for d in [&old_d, &new_d] {
        assert!(
            err.contains(&format!("janitor: {d} is held by a live run — leaving it")),
            "{err}"
        );
    }
    assert_eq!(snapshot(&sw), before, "a live run was touched: {err}");

    // Both builds end, leaving their apps behind as a crash would.
    old_gate.release();
    new_gate.release();
    assert!(old.finish().0.success());
    assert!(new.finish().0.success());

    // The old janitor reaps the ccci run's orphan, unlinking its old lockfile ...
    let out = pass_within(sw.old_janitor(&only(&[&new_d])));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("janitor: reaped {new_d}")), "{err}");
    assert_eq!(leftovers(&stack(&new_d)), Vec::<String>::new());
    assert!(!sw.old_lockfile(&new_d).exists());
    // ... and ccci's the old build's, unlinking both lockfiles.
    let out = pass_within(sw.janitor(&only(&[&old_d]), &[]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("ccci-janitor: reaped {old_d} (removed ")),
        "{err}"
    );
    assert_eq!(leftovers(&stack(&old_d)), Vec::<String>::new());
    assert!(!sw.app.env_file(&old_d).exists());
    assert!(
        !sw.old_lockfile(&old_d).exists(),
        "the old lockfile outlived the reap"
    );
    assert!(!sw.app.sb.lockfile(&old_d).exists());
    // The ccci run's own lockfile, which the old layer knows nothing of: tidied.
    let out = pass_within(sw.janitor(&only(&[&new_d]), &[]));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("tidied {new_d}")), "{err}");

    // Nothing of the switch stays, and with the setting gone (unset or empty) a ccci
    // run makes no old lockfile.
    assert_eq!(list(&sw.old_dir), Vec::<String>::new());
    let off = sw.domain("swf");
    for setting in [None, Some("")] {
        let mut lock = sw.app.sb.cmd("ccci-lock");
        lock.args([&off, "--", "sh", "-c", "ls -l /proc/$$/fd/ >&2"]);
        if let Some(value) = setting {
            lock.env("CCCI_LEGACY_LOCK_DIR", value);
        }
        let out = output_in(lock, crate::support::PATIENCE);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("old-locks"), "{err}");
        assert_eq!(list(&sw.old_dir), Vec::<String>::new());
    }
}

/// Who entered, in order, from the marks log.
fn entries(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.strip_prefix("enter "))
        .collect()
}

#[test]
fn two_builds_of_one_domain_one_of_each_layer_take_turns() {
    if !swarm::available("two_builds_of_one_domain_one_of_each_layer_take_turns") {
        return;
    }
    let mut sw = Switch::new();
    let d = sw.domain("swt");
    let marks = sw.app.sb.path("marks");
    let m = marks.display();
    let up_down =
        format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" down {d}");

    // The old build first: deployed, held at a gate; the ccci build waits for it, saying so.
    let gate = sw.app.sb.fifo("gate1");
    let mut old = Background::spawn(sw.old_run(
        &d,
        &format!(
            "echo enter old >> '{m}' && \"$OLD\" deploy {d} two-services && read x < '{}' && \"$OLD\" teardown {d} && echo leave old >> '{m}'",
            gate.path.display()
        ),
    ));
    old.wait_for_any_within(DEPLOY_PATIENCE, &[&format!("deployed {d}")]);
    let mut new = Background::spawn(sw.ccci_run(
        "2a",
        &d,
        &format!("echo enter new >> '{m}' && {up_down} && echo leave new >> '{m}'"),
    ));
    let waiting = new.wait_for("is held by a run of the old layer");
    assert!(
        waiting.contains(&format!("(pid {}, held ", old.pid()))
            && waiting.ends_with("— waiting =="),
        "{waiting}"
    );
    assert_eq!(fs::read_to_string(&marks).unwrap(), "enter old\n");
    gate.release();
    assert!(old.finish_within(DEPLOY_PATIENCE).0.success());
    let (status, lines) = new.finish_within(DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("== app lock: acquired {d} after "))),
        "{lines:?}"
    );

    // The ccci build first: deployed, held at a gate; the old build blocks in its flock.
    let gate = sw.app.sb.fifo("gate2");
    let mut new = Background::spawn(sw.ccci_run(
        "2b",
        &d,
        &format!(
            "echo enter new >> '{m}' && \"$DEPLOY\" up {d} --recipe two-services --timeout 2m && echo ccci-run-deployed >&2 && read x < '{}' && \"$DEPLOY\" down {d} && echo leave new >> '{m}'",
            gate.path.display()
        ),
    ));
    new.wait_for_any_within(DEPLOY_PATIENCE, &["ccci-run-deployed"]);
    let mut old = Background::spawn(sw.old_run(
        &d,
        &format!(
            "echo enter old >> '{m}' && \"$OLD\" deploy {d} two-services && \"$OLD\" teardown {d} && echo leave old >> '{m}'"
        ),
    ));
    old.wait_for(&format!("{d} is locked by another run — waiting"));
    wait_until_blocked_on(&sw.old_lockfile(&d));
    assert_eq!(
        entries(&fs::read_to_string(&marks).unwrap()),
        ["old", "new", "new"]
    );
    gate.release();
    assert!(new.finish_within(DEPLOY_PATIENCE).0.success());
    let (status, lines) = old.finish_within(DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");

    let log = fs::read_to_string(&marks).unwrap();
    assert_eq!(assert_no_overlap(&log), 4, "{log}");
    assert_eq!(entries(&log), ["old", "new", "new", "old"], "{log}");
    assert_eq!(leftovers(&stack(&d)), Vec::<String>::new());
}

#[test]
fn a_ccci_run_that_waits_out_the_old_janitors_reap_reopens_the_old_lockfile() {
    // The old janitor unlinks the old lockfile after reaping, while holding it: a ccci run
    // blocked on that inode wakes holding a dead file, and must notice, reopen the path
    // and hold the fresh one — or an old build starting now would deploy beside it.
    if !swarm::available("a_ccci_run_that_waits_out_the_old_janitors_reap_reopens_the_old_lockfile")
    {
        return;
    }
    let mut sw = Switch::new();
    let d = sw.domain("swr");
    // An old build's orphan.
    let out = output_in(
        sw.old_run(&d, &format!("\"$OLD\" deploy {d} two-services")),
        DEPLOY_PATIENCE,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The old janitor reaps it, held at a gate at its `docker stack rm`.
    let gate = sw.app.sb.fifo("gate");
    let mark = sw.app.sb.path("hang.mark");
    let mut janitor = sw.old_janitor(&only(&[&d]));
    janitor
        .env("DOCKER", swarm::hang())
        .env("HANG_REAL", "docker")
        .env("HANG_MARK", &mark)
        .env("GATE_ON", "stack rm *")
        .env("GATE", &gate.path);
    let janitor = Background::spawn(janitor);
    swarm::wait_for_line(&mark, "gated", crate::support::PATIENCE);
    let reaped_inode = fs::metadata(sw.old_lockfile(&d)).unwrap().ino();
    let mut run = Background::spawn(sw.ccci_run(
        "3",
        &d,
        &format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" down {d}"),
    ));
    run.wait_for("is held by a run of the old layer");
    gate.release();
    let (status, lines) = janitor.finish_within(DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("janitor: reaped {d}"))),
        "{lines:?}"
    );
    let (status, lines) = run.finish_within(DEPLOY_PATIENCE);
    assert!(status.success(), "{lines:?}");
    let reopened = format!(
        "was unlinked while we waited on it (inode {reaped_inode}, by the old layer's janitor) — reopening"
    );
    assert!(lines.iter().any(|l| l.contains(&reopened)), "{lines:?}");
    assert!(sw.old_lockfile(&d).exists());
}

#[test]
fn a_ccci_run_gives_up_on_an_old_build_of_its_domain_as_on_any_run() {
    // No swarm needed: the old build only holds its lock.
    let mut sw = Switch::new();
    let d = sw.domain("swg");
    let gate = sw.app.sb.fifo("gate");
    let mut old = Background::spawn(sw.old_run(
        &d,
        &format!("echo in >&2; read x < '{}'", gate.path.display()),
    ));
    old.wait_for(&format!("locked {d}"));
    let old_file = sw.old_lockfile(&d);
    for (args, how) in [
        (&["-n"][..], "not waiting".to_owned()),
        (&["-w", "0.3"][..], "gave up after 0.3s".to_owned()),
    ] {
        let mut lock = sw.app.sb.cmd("ccci-lock");
        lock.env("CCCI_LEGACY_LOCK_DIR", &sw.old_dir)
            .args(args)
            .args([&d, "--", "sh", "-c", "echo ran >&2"]);
        let out = output_in(lock, crate::support::PATIENCE);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{err}");
        assert!(
            err.contains(&format!(
                "ccci-lock: {d} is held by a run of the old layer (pid {}, through {}) — {how}",
                old.pid(),
                old_file.display()
            )),
            "{err}"
        );
        assert!(!err.contains("ran"), "{err}");
        // Its own lock went with it.
        assert!(!held(&sw.app.sb.lockfile(&d)), "{err}");
    }
    // The old layer's file is as it made it: mode, inode, nothing written.
    let meta = fs::metadata(&old_file).unwrap();
    assert_eq!((meta.permissions().mode() & 0o7777, meta.len()), (0o644, 0));
    gate.release();
    assert!(old.finish().0.success());
}
