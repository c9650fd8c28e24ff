//! Two processes, one domain: the visible wait, the hand-off, giving up, the lock's
//! lifetime, and interoperation with flock(1).

use std::process::Command;
use std::time::{Duration, Instant};

use predicates::prelude::*;

use super::{D, hold, hold_until};
use crate::support::{Background, Sandbox};

#[test]
fn a_waiter_names_the_holder_then_starts_within_50ms_of_its_exit() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    // The holder's last act is a timestamp; then it exits and the kernel releases D.
    let holder = hold(
        &sb,
        D,
        &["--run-id", "41"],
        &format!("read x < '{}'; date +%s%N > t1", go.path.display()),
    );
    let mut waiter = sb.cmd("ccci-lock");
    waiter
        .current_dir(sb.tmp.path())
        .args([D, "--", "sh", "-c", "date +%s%N > t2"]);
    let mut waiter = Background::spawn(waiter);
    let line = waiter.wait_for("— waiting ==");
    assert!(
        line.starts_with(&format!(
            "== app lock: another run of {D} in flight (pid {}, run 41, held ",
            holder.pid()
        )),
        "{line}"
    );
    go.release();
    let (status, lines) = waiter.finish();
    assert!(status.success(), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("waiting")).count(),
        1,
        "{lines:?}"
    );
    let acquired = lines.last().unwrap();
    assert!(
        acquired.starts_with(&format!("== app lock: acquired {D} after ")),
        "{lines:?}"
    );
    assert!(acquired.ends_with("s =="), "{acquired}");

    let stamp = |f: &str| {
        sb.read(f)
            .trim()
            .parse::<u128>()
            .unwrap_or_else(|_| panic!("no stamp in {f}"))
    };
    let (released, started) = (stamp("t1"), stamp("t2"));
    assert!(
        started >= released,
        "the waiter ran before the holder's last act"
    );
    let gap = Duration::from_nanos((started - released) as u64);
    assert!(gap < Duration::from_millis(50), "hand-off took {gap:?}");
}

#[test]
fn no_wait_fails_at_once_with_75_naming_the_holder() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let holder = hold(
        &sb,
        D,
        &["--run-id", "41"],
        &format!("read x < '{}'", go.path.display()),
    );
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "touch", "ran"])
        .current_dir(sb.tmp.path())
        .assert()
        .code(75)
        .stderr(predicate::str::diff(format!(
            "ccci-lock: {D} is held by pid {} (run 41) — not waiting\n",
            holder.pid()
        )));
    sb.assert("ccci-lock")
        .args(["-E", "9", "-n", D, "--", "true"])
        .assert()
        .code(9);
    sb.assert("ccci-lock")
        .args(["--wait", "0", D, "--", "true"])
        .assert()
        .code(75);
    assert!(!sb.path("ran").exists(), "the command ran without the lock");
    go.release();
}

#[test]
fn wait_gives_up_after_the_duration_with_75() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let _holder = hold_until(&sb, D, &go);
    let start = Instant::now();
    sb.assert("ccci-lock")
        .args(["-w", "0.3", D, "--", "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("— waiting =="))
        .stderr(predicate::str::is_match(r"gave up after (0\.[3-9]|[1-9][0-9.]*)s").unwrap());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "hung: {took:?}");
    // The same through the environment.
    sb.assert("ccci-lock")
        .env("CCCI_LOCK_WAIT", "0.2")
        .args([D, "--", "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::is_match(r"gave up after (0\.[2-9]|[1-9][0-9.]*)s").unwrap());
    go.release();
}

#[test]
fn while_waiting_a_progress_line_repeats() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let holder = hold(
        &sb,
        D,
        &["--run-id", "41"],
        &format!("read x < '{}'", go.path.display()),
    );
    let mut waiter = sb.cmd("ccci-lock");
    waiter.args(["--progress-interval", "0.1", D, "--", "true"]);
    let mut waiter = Background::spawn(waiter);
    let line = waiter.wait_for("still waiting");
    assert!(
        line.starts_with(&format!("== app lock: still waiting for {D} after "))
            && line.ends_with(&format!(" (pid {}, run 41) ==", holder.pid())),
        "{line}"
    );
    go.release();
    assert!(waiter.finish().0.success());
}

#[test]
fn quiet_prints_no_progress_lines() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let _holder = hold_until(&sb, D, &go);
    let mut waiter = sb.cmd("ccci-lock");
    waiter.args(["-q", D, "--", "true"]);
    let waiter = Background::spawn(waiter);
    // The holder can only be released once the waiter is blocked; with -q there is no
    // line to wait for, so watch the kernel's lock table for its blocked request.
    crate::support::wait_until_blocked_on(&sb.lockfile(D));
    go.release();
    let (status, lines) = waiter.finish();
    assert!(status.success());
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn the_lock_lives_as_long_as_any_process_that_inherited_it() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let log = sb.path("log");
    // The command exits at once, leaving a background child with the lock descriptor.
    let script = format!(
        "(read x < '{}'; echo leave-bg >> '{}') >/dev/null 2>&1 & exit 0",
        go.path.display(),
        log.display()
    );
    sb.assert("ccci-lock")
        .args([D, "--", "sh", "-c", &script])
        .assert()
        .success();
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .assert()
        .code(75);
    let mut waiter = sb.cmd("ccci-lock");
    waiter.args([
        D,
        "--",
        "sh",
        "-c",
        &format!("echo enter-waiter >> '{}'", log.display()),
    ]);
    let mut waiter = Background::spawn(waiter);
    waiter.wait_for("— waiting ==");
    go.release();
    assert!(waiter.finish().0.success());
    assert_eq!(sb.read("log"), "leave-bg\nenter-waiter\n");
}

#[test]
fn interoperates_with_flock1_both_ways() {
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let holder = hold_until(&sb, D, &go);
    let lockfile = sb.lockfile(D);
    let flock_n = || {
        Command::new("flock")
            .arg("-n")
            .arg(&lockfile)
            .arg("true")
            .status()
            .unwrap()
    };
    assert!(!flock_n().success(), "flock(1) got a lock ccci-lock holds");
    go.release();
    assert!(holder.finish().0.success());
    assert!(flock_n().success());

    // flock(1) holds it now and writes no metadata: the file still has the last
    // ccci-lock holder's, but the waiting line names flock(1)'s pid from the kernel.
    let go = sb.fifo("go2");
    let mut flock = Command::new("flock");
    flock.arg(&lockfile).args([
        "sh",
        "-c",
        &format!("echo held >&2; read x < '{}'", go.path.display()),
    ]);
    let mut flock = Background::spawn(flock);
    flock.wait_for("held");
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .assert()
        .code(75);
    let mut waiter = sb.cmd("ccci-lock");
    waiter.args([D, "--", "true"]);
    let mut waiter = Background::spawn(waiter);
    let line = waiter.wait_for("— waiting ==");
    let expected = format!("(pid {}, run unknown, held unknown)", flock.pid());
    assert!(line.contains(&expected), "{line}");
    go.release();
    assert!(waiter.finish().0.success());
}

#[test]
fn garbage_in_the_lockfile_reads_as_unknown_and_is_replaced() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.lock_dir()).unwrap();
    std::fs::write(sb.lockfile(D), "{\"version\":1,\"pid\":12").unwrap();
    let out = sb
        .assert("ccci-lock")
        .args([D, "--", "sh", "-c", "cat \"$CCCI_LOCK_FILE\""])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let meta: serde_json::Value = serde_json::from_slice(&out).expect("metadata replaced whole");
    assert_eq!(meta["tool"], "ccci-lock");
}

#[test]
fn a_run_holding_through_a_lockfile_removed_by_hand_is_waited_for() {
    // Outside the protocol: a holder's lockfile is removed by hand. A newcomer gets a
    // fresh lockfile at once, yet the domain is still held — it must wait, visibly, for
    // the holder to end, and never be inside with it (enter/leave marks).
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let log = sb.path("log");
    let holder = hold(
        &sb,
        D,
        &[],
        &format!(
            "echo 'enter A' >> '{l}'; read x < '{g}'; echo 'leave A' >> '{l}'",
            l = log.display(),
            g = go.path.display()
        ),
    );
    std::fs::remove_file(sb.lockfile(D)).unwrap();
    let mut newcomer = sb.cmd("ccci-lock");
    newcomer.current_dir(sb.tmp.path()).args([
        D,
        "--",
        "sh",
        "-c",
        &format!(
            "echo 'enter B' >> '{l}'; echo 'leave B' >> '{l}'",
            l = log.display()
        ),
    ]);
    let mut newcomer = Background::spawn(newcomer);
    let line = newcomer.wait_for("removed by hand — waiting for it to end ==");
    assert!(
        line.contains(&format!("held by pid {} (sh)", holder.pid())),
        "{line}"
    );
    go.release();
    let (status, lines) = newcomer.finish();
    assert!(status.success(), "{lines:?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with(&format!("== app lock: acquired {D} after "))),
        "{lines:?}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(crate::support::assert_no_overlap(&log), 2, "{log}");
    assert!(log.starts_with("enter A\nleave A\n"), "{log}");
    // Without waiting, it says who holds the domain, and how.
    let holder = hold(&sb, D, &[], &format!("read x < '{}'", go.path.display()));
    std::fs::remove_file(sb.lockfile(D)).unwrap();
    sb.assert("ccci-lock")
        .args(["--no-wait", D, "--", "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!(
            "{D} is held by pid {} (sh) through a lockfile that was removed by hand — not waiting",
            holder.pid()
        )));
    go.release();
    assert!(holder.finish().0.success());
}

#[test]
fn a_nested_run_whose_lockfile_was_removed_by_hand_does_not_wait_for_itself() {
    // The outer run's lockfile is removed by hand; the command then runs `ccci-lock D`
    // again. The dead inode's holder is the outer run — this one's own, through the
    // descriptor it passed down — never someone to wait for (that would be forever).
    let sb = Sandbox::new();
    let lock = crate::support::bin("ccci-lock");
    let mut outer = sb.assert("ccci-lock");
    outer.timeout(Duration::from_secs(10)).args([
        "-w",
        "5",
        D,
        "--",
        "sh",
        "-c",
        &format!(
            "rm \"$CCCI_LOCK_FILE\" && '{l}' -w 5 {D} -- echo inner-ran",
            l = lock.display()
        ),
    ]);
    outer
        .assert()
        .success()
        .stdout(predicate::str::contains("inner-ran"))
        .stdout(predicate::str::contains("removed by hand").not())
        .stderr(predicate::str::contains("removed by hand").not());
}

#[test]
fn an_unreadable_lock_table_never_lets_a_second_run_in() {
    // A holder's lockfile is removed by hand; a newcomer that cannot read the kernel's
    // lock table or its own descriptors (a low `ulimit -n`: EMFILE) cannot tell whether
    // the domain is held, so it must refuse — never run its command beside the holder.
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let _holder = hold(&sb, D, &[], &format!("read x < '{}'", go.path.display()));
    std::fs::remove_file(sb.lockfile(D)).unwrap();
    let lock = crate::support::bin("ccci-lock");
    for limit in 4..=8 {
        let ran = sb.path(&format!("ran-{limit}"));
        let mut sh = Command::new("sh");
        crate::support::scrub(&mut sh);
        let out = sh
            .env("CCCI_APP_LOCK_DIR", sb.lock_dir())
            .args([
                "-c",
                &format!(
                    "ulimit -n {limit} && exec '{l}' -n {D} -- touch '{r}'",
                    l = lock.display(),
                    r = ran.display()
                ),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !ran.exists() && !err.contains("acquired"),
            "ulimit -n {limit}: went in beside the holder: {err}"
        );
        assert!(
            matches!(out.status.code(), Some(75 | 125)),
            "ulimit -n {limit}: {:?} {err}",
            out.status
        );
        if out.status.code() == Some(125) {
            assert!(err.contains("cannot tell"), "ulimit -n {limit}: {err}");
        }
    }
    go.release();
}

#[test]
fn a_run_whose_lockfile_was_removed_takes_it_again_nested_while_a_newcomer_waits() {
    // W holds D; its lockfile is removed by hand; X takes the fresh lockfile and waits
    // for W (step 6). W then takes D again, nested: it holds D (X waits for it), so it
    // must go in at once — waiting for the fresh lockfile would be waiting for X, which
    // waits for W: forever. Then X goes, after W (enter/leave marks).
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let log = sb.path("log");
    let lock = crate::support::bin("ccci-lock");
    let w = hold(
        &sb,
        D,
        &[],
        &format!(
            "echo 'enter W' >> '{l}'; read x < '{g}'; \
             '{lock}' -n {D} -- sh -c \"echo 'inner W' >> '{l}'\"; \
             echo \"leave W $?\" >> '{l}'",
            l = log.display(),
            g = go.path.display(),
            lock = lock.display()
        ),
    );
    std::fs::remove_file(sb.lockfile(D)).unwrap();
    let mut x = sb.cmd("ccci-lock");
    x.current_dir(sb.tmp.path()).args([
        D,
        "--",
        "sh",
        "-c",
        &format!(
            "echo 'enter X' >> '{l}'; echo 'leave X' >> '{l}'",
            l = log.display()
        ),
    ]);
    let mut x = Background::spawn(x);
    x.wait_for("removed by hand — waiting for it to end ==");
    go.release();
    let (status, lines) = w.finish();
    assert!(status.success(), "{lines:?}");
    let (status, lines) = x.finish();
    assert!(status.success(), "{lines:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "enter W\ninner W\nleave W 0\nenter X\nleave X\n"
    );
}
