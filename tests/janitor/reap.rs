//! Reaping an orphan: completely and once, after a reboot, with a run waiting for the
//! domain, as a dry run, and never what is not the orphan's (a sub-domain's secrets, warm
//! or non-matching apps).

use std::fs;

use super::{live_run, only, pass_within, with_orphan};
use crate::support::{Background, bin, output_within, stack, text};
use crate::swarm::{self, App, leftovers};

#[test]
fn an_orphan_is_reaped_completely_and_its_lockfile_removed() {
    if !swarm::available("an_orphan_is_reaped_completely_and_its_lockfile_removed") {
        return;
    }
    let (app, d) = with_orphan("j1");
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
    let (app, d) = with_orphan("j4");
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
    let (app, d) = with_orphan("j5");
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
    let (app, d) = with_orphan("j6");
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
    let (app, d) = with_orphan("j7");
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
    let (gate, _holder) = live_run(&app, &abc, "gate");
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
