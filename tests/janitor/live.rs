//! A live run is left: one holding its lockfile, a stale one (named as a possible leak),
//! and one whose lockfile was moved or renamed by hand.

use std::fs;
use std::process::Command;

use super::{live_run, only, pass_within};
use crate::support::{Background, output_within, stack, text};
use crate::swarm::{self, App, leftovers};

#[test]
fn a_live_run_and_a_stale_lock_are_left_and_the_stale_one_named() {
    if !swarm::available("a_live_run_and_a_stale_lock_are_left_and_the_stale_one_named") {
        return;
    }
    let mut app = App::new();
    let (live, stale) = (app.domain("j2"), app.domain("j2"));
    app.orphan("2", &live);
    // A live run: a real process holds the lock.
    let (gate, holder) = live_run(&app, &live, "gate");
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
        app.env_only(&d);
        let (gate, holder) = live_run(&app, &d, &format!("gate{i}"));
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
