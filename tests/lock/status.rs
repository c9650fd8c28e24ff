//! Status mode: probes that list, create nothing and change nothing.

use std::fs;

use predicates::prelude::*;

use super::{D, hold};
use crate::support::{Sandbox, exists, list};

const OTHER: &str = "abcd-0a1b2c.ci.example.org";

#[test]
fn status_lists_held_and_free_locks_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .args([OTHER, "--", "true"])
        .assert()
        .success();
    let go = sb.fifo("go");
    let holder = hold(
        &sb,
        D,
        &["--run-id", "41"],
        &format!("read x < '{}'", go.path.display()),
    );
    let content = |d| fs::read(sb.lockfile(d)).unwrap();
    let mtime = |d| fs::metadata(sb.lockfile(d)).unwrap().modified().unwrap();
    let before = (
        content(D),
        mtime(D),
        content(OTHER),
        mtime(OTHER),
        list(&sb.lock_dir()),
    );

    let out = sb
        .assert("ccci-lock")
        .arg("--status")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let row = |d: &str| {
        text.lines()
            .find(|l| l.starts_with(d))
            .unwrap_or_else(|| panic!("{d} in {text}"))
            .to_owned()
    };
    let held = row(D);
    assert!(
        held.contains("held") && held.contains(&holder.pid().to_string()) && held.contains(" 41 "),
        "{held}"
    );
    assert!(held.contains(" yes "), "holder alive: {held}");
    assert!(row(OTHER).contains("free"), "{text}");

    let out = sb
        .assert("ccci-lock")
        .args(["--status", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["version"], 1);
    let locks = doc["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 2);
    let held = locks.iter().find(|l| l["domain"] == D).unwrap();
    assert_eq!(held["state"], "held");
    assert_eq!(held["holder"]["pid"], holder.pid());
    assert_eq!(held["holder"]["run_id"], "41");
    assert_eq!(held["holder_alive"], true);
    assert_eq!(
        locks.iter().find(|l| l["domain"] == OTHER).unwrap()["state"],
        "free"
    );

    // One domain: the exit status answers "is it held?".
    sb.assert("ccci-lock")
        .args(["--status", D])
        .assert()
        .code(1);
    sb.assert("ccci-lock")
        .args(["--status", OTHER])
        .assert()
        .code(0);
    let after = (
        content(D),
        mtime(D),
        content(OTHER),
        mtime(OTHER),
        list(&sb.lock_dir()),
    );
    assert_eq!(before, after, "a status probe changed the lock dir");
    go.release();
}

#[test]
fn status_of_an_unknown_domain_is_free_and_creates_no_lockfile() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.lock_dir()).unwrap();
    sb.assert("ccci-lock")
        .args(["--status", "--json", D])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"state\":\"free\""))
        .stdout(predicate::str::contains("\"exists\":false"));
    assert!(list(&sb.lock_dir()).is_empty());
    sb.assert("ccci-lock")
        .args(["--status", "../x"])
        .assert()
        .code(125);
}

#[test]
fn status_with_a_missing_lock_dir_says_so_and_creates_nothing() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .arg("--status")
        .assert()
        .code(0)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("CCCI_APP_LOCK_DIR"));
    assert!(!exists(&sb.lock_dir()));
}

#[test]
fn status_says_held_for_a_run_holding_a_lockfile_removed_by_hand() {
    // A run that starts on D would wait for it (step 6): --status must not say free.
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let holder = hold(&sb, D, &[], &format!("read x < '{}'", go.path.display()));
    fs::remove_file(sb.lockfile(D)).unwrap();
    // Named, it is held (exit 1), and who holds it is said.
    sb.assert("ccci-lock")
        .args(["--status", D])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "held by pid {} (sh) through a lockfile that was removed by hand",
            holder.pid()
        )));
    // Listed with the others, though no lockfile names it; and still nothing created.
    let out = sb
        .assert("ccci-lock")
        .args(["--status", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["locks"][0]["domain"], D, "{doc}");
    assert_eq!(doc["locks"][0]["state"], "held", "{doc}");
    assert!(list(&sb.lock_dir()).is_empty());
    go.release();
    assert!(holder.finish().0.success());
}
