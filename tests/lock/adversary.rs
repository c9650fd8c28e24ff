//! What an adversarial review of "only the owner can lock" (issue 12 point 1) tried: ways
//! another user could still block a run, or two runs of one domain get in at once, through
//! judging who holds an old 0644 lockfile. Each failed against that design; an old lockfile
//! is now retired unjudged (lockowner.rs), and each test says what must hold instead.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use super::{D, NOBODY, as_nobody, old_lockfile, reachable_sandbox};
use crate::support::{Background, PATIENCE, Sandbox, require_root, wait_until_blocked_on};

/// F1: `flock -s` instead of `flock -x` — the foreign check only looks at exclusive
/// locks, so a shared one by another user blocks every run (75 with -n, forever without).
#[test]
fn adv_another_users_shared_flock_on_an_old_lockfile_cannot_block_a_run() {
    if !require_root("adv_another_users_shared_flock_on_an_old_lockfile_cannot_block_a_run") {
        return;
    }
    let sb = reachable_sandbox();
    sb.abra_servers();
    old_lockfile(&sb.lockfile(D));
    let lockfile = sb.lockfile(D).display().to_string();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec flock -s '{lockfile}' sh -c 'echo squatting >&2; exec sleep 1000'"
    )));
    squatter.wait_for("squatting");
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .timeout(PATIENCE)
        .assert()
        .success();

    // The same through a run's old .run.lock.
    let run = sb.runs_dir().join("r1");
    fs::create_dir_all(&run).unwrap();
    fs::set_permissions(sb.runs_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    old_lockfile(&run.join(".run.lock"));
    let run_lock = run.join(".run.lock").display().to_string();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec flock -s '{run_lock}' sh -c 'echo squatting >&2; exec sleep 1000'"
    )));
    squatter.wait_for("squatting");
    sb.assert("ccci-rundir")
        .args(["--run-id", "r1", "--", "true"])
        .timeout(PATIENCE)
        .assert()
        .success();
}

/// F3: a root `flock(1)` run (interop, docs/lock.md) whose command drops privileges holds
/// D through a read-only description with no root uid: it is taken for a foreigner, its
/// lockfile swapped out, and a second run goes in.
#[test]
fn adv_a_root_flock_run_that_drops_privileges_is_still_waited_for() {
    if !require_root("adv_a_root_flock_run_that_drops_privileges_is_still_waited_for") {
        return;
    }
    let sb = reachable_sandbox();
    sb.assert("ccci-lock")
        .args([D, "--", "true"])
        .assert()
        .success();
    let mut run = Command::new("flock");
    run.arg("-F")
        .arg(sb.lockfile(D))
        .arg("setpriv")
        .args(NOBODY)
        .args(["sh", "-c", "echo inside >&2; exec sleep 1000"]);
    let mut run = Background::spawn(run);
    run.wait_for("inside");
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .timeout(PATIENCE)
        .assert()
        .code(75);
}

/// F4: the "(deleted)" rule of `applock::inherited`. A root `flock(1)` waiter that wakes
/// up on the inode a holder unlinked on its way out (the janitor's way: unlink, then
/// release — the unlink race of docs/lock.md) holds an exclusive flock on
/// `cc-ci-app-D.lock (deleted)`; a newcomer meanwhile holds the fresh lockfile. A nested
/// `ccci-lock D` under that waiter must queue behind the newcomer, not say "already held
/// by this run" and go in beside it.
#[test]
fn adv_a_dead_inode_won_in_the_unlink_race_is_not_this_runs_lock() {
    if !require_root("adv_a_dead_inode_won_in_the_unlink_race_is_not_this_runs_lock") {
        return;
    }
    let sb = Sandbox::new();
    let lockfile = sb.lockfile(D);
    let gate = sb.fifo("unlink");
    // U holds D, and on release unlinks its lockfile first (as the janitor does).
    let unlinker = super::hold(
        &sb,
        D,
        &[],
        &format!(
            "read x < '{}'; rm '{}'",
            gate.path.display(),
            lockfile.display()
        ),
    );
    // W: a root flock(1) run queued behind U, whose command takes D again.
    let mut waiter = Command::new("flock");
    waiter
        .arg("-x")
        .arg(&lockfile)
        .arg(crate::support::bin("ccci-lock"))
        .args([D, "--", "sh", "-c", "echo W inside >&2; exec sleep 1000"]);
    crate::support::scrub(&mut waiter);
    waiter.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
    let mut waiter = Background::spawn(waiter);
    wait_until_blocked_on(&lockfile);
    // Not scheduled at the instant U lets go (a busy 2-core host): stand-in, SIGSTOP.
    let w = nix::unistd::Pid::from_raw(waiter.pid() as i32);
    nix::sys::signal::kill(w, nix::sys::signal::Signal::SIGSTOP).unwrap();
    gate.release();
    let (status, _) = unlinker.finish();
    assert!(status.success());
    // C: a newcomer takes the fresh lockfile; nobody holds the dead one yet.
    let _newcomer = super::hold(&sb, D, &[], "sleep 1000; true");
    nix::sys::signal::kill(w, nix::sys::signal::Signal::SIGCONT).unwrap();
    let (which, line) = waiter.wait_for_any(&["already held by this run", "waiting"]);
    assert_eq!(
        which, 1,
        "the nested ccci-lock went in beside the newcomer: {line}"
    );
}

/// F6: judge, then exchange. The foreigner lets go of the squatted inode while the
/// replacer is still judging it (it made that slow: thousands of descriptors to read);
/// a root run R arriving then takes the old, still named inode. The replacer swaps it
/// out and unlinks it, and goes in beside R: its step-6 look does not see R, whose dead
/// inode's last name is the `.replacing` temp name. At most one may be inside.
#[test]
fn adv_a_run_that_takes_the_squatted_inode_before_the_exchange_is_not_joined() {
    if !require_root("adv_a_run_that_takes_the_squatted_inode_before_the_exchange_is_not_joined") {
        return;
    }
    let mut raced = 0;
    for _round in 0..5 {
        let sb = reachable_sandbox();
        old_lockfile(&sb.lockfile(D));
        let lockfile = sb.lockfile(D).display().to_string();
        let go = sb.fifo("go");
        fs::set_permissions(&go.path, fs::Permissions::from_mode(0o666)).unwrap();
        // flock -F: the foreigner itself is the lock's placer (no scan of every process).
        let squatter = format!(
            "exec flock -F -x '{lockfile}' bash -c 'ulimit -n $(ulimit -Hn) 2>/dev/null; \
             for i in $(seq 15000); do exec {{fd}}</dev/null || break; done; \
             echo squatting >&2; read x < \"{go}\"; flock -u 3; echo released >&2; exec sleep 1000'",
            go = go.path.display()
        );
        let mut squatter = Background::spawn(as_nobody(&squatter));
        squatter.wait_for("squatting");
        let fpid = squatter.pid();
        let mut a = sb.cmd("ccci-lock");
        a.args([D, "--", "sh", "-c", "echo A inside >&2; exec sleep 1000"]);
        let mut a = Background::spawn(a);
        // A is judging the squatter: it has the squatter's fd directory open.
        let judging = format!("/proc/{fpid}/fd");
        let end = Instant::now() + PATIENCE;
        'judge: loop {
            for fd in fs::read_dir(format!("/proc/{}/fd", a.pid()))
                .into_iter()
                .flatten()
            {
                if fd
                    .ok()
                    .and_then(|fd| fs::read_link(fd.path()).ok())
                    .is_some_and(|l| l.as_os_str() == judging.as_str())
                {
                    break 'judge;
                }
            }
            assert!(Instant::now() < end, "A never looked at the squatter");
        }
        go.release();
        squatter.wait_for("released");
        let mut r = sb.cmd("ccci-lock");
        r.args([
            "-n",
            D,
            "--",
            "sh",
            "-c",
            "echo R inside >&2; exec sleep 1000",
        ]);
        let mut r = Background::spawn(r);
        let (which, _) = r.wait_for_any(&["R inside", "not waiting"]);
        if which == 1 {
            continue; // A swapped first and holds D: R was refused, as it should be
        }
        raced += 1;
        let (which, line) = a.wait_for_any(&["A inside", "waiting"]);
        assert_eq!(
            which, 1,
            "A went in while R is inside: {line}; A saw {:?}",
            a.seen
        );
    }
    eprintln!("R got in before the exchange in {raced} of 5 rounds");
}

/// F8: the foreigner keeps its old read-only descriptor across an exec of a setuid-root
/// program (`su`, waiting at its password prompt for ever): euid and saved uid 0 read as
/// "may be a run", and root runs wait for it again.
#[test]
fn adv_a_foreigner_behind_a_setuid_program_cannot_block_a_run() {
    if !require_root("adv_a_foreigner_behind_a_setuid_program_cannot_block_a_run") {
        return;
    }
    if !std::path::Path::new("/usr/bin/su").exists() {
        eprintln!("skipped: no /usr/bin/su");
        return;
    }
    let sb = reachable_sandbox();
    old_lockfile(&sb.lockfile(D));
    let lockfile = sb.lockfile(D).display().to_string();
    let never = sb.fifo("never");
    fs::set_permissions(&never.path, fs::Permissions::from_mode(0o666)).unwrap();
    // Someone must hold the fifo's write end open, or su reads EOF and gives up.
    let _writer = Background::spawn({
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("exec sleep 1000 > '{}'", never.path.display()),
        ]);
        c
    });
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec 3<'{lockfile}'; flock -x 3; echo squatting >&2; exec su root -c true < '{}'",
        never.path.display()
    )));
    squatter.wait_for("squatting");
    // su has started (it holds the descriptor with euid 0) once it asks for the password.
    let pid = squatter.pid();
    let end = Instant::now() + PATIENCE;
    while !fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.contains("\t0\t"))
    }) {
        assert!(Instant::now() < end, "su never started");
    }
    sb.assert("ccci-lock")
        .args(["-n", D, "--", "true"])
        .timeout(PATIENCE)
        .assert()
        .success();
}

/// F9: concurrent replacers. Four root runs start together on a lockfile another user
/// squats (and keeps squatting): one replaces it; the others, which judged the old inode
/// too, swap back with whatever the path names by then — two swap-backs interleaved
/// unlink the winner's live lockfile and leave a free one at the path. At most one run
/// may be inside at any time.
#[test]
fn adv_concurrent_replacers_never_let_two_runs_in() {
    if !require_root("adv_concurrent_replacers_never_let_two_runs_in") {
        return;
    }
    let mut logs = String::new();
    let mut stuck = Vec::new();
    for round in 0..120 {
        let sb = reachable_sandbox();
        old_lockfile(&sb.lockfile(D));
        let lockfile = sb.lockfile(D).display().to_string();
        let mut squatter = Background::spawn(as_nobody(&format!(
            "exec 3<'{lockfile}'; flock -x 3; echo squatting >&2; exec sleep 1000"
        )));
        squatter.wait_for("squatting");
        let log = sb.path("log");
        let runs: Vec<_> = (0..4)
            .map(|w| {
                let mut run = sb.cmd("ccci-lock");
                run.args(["-w", "10s", D, "--", "sh", "-c"]).arg(format!(
                    "echo 'enter R{round}.{w}' >> '{log}'; sleep 0.05; echo 'leave R{round}.{w}' >> '{log}'",
                    log = log.display()
                ));
                Background::spawn(run)
            })
            .collect();
        for run in runs {
            // A run left blocked behind the squatter (F2: judged once, never again) gives
            // up after 10 s: noted, not what this test is about.
            let (status, seen) = run.finish_within(PATIENCE * 2);
            if !status.success() {
                stuck.push(format!("round {round}: {status} {seen:?}"));
            }
        }
        logs.push_str(&fs::read_to_string(&log).unwrap());
    }
    eprintln!("runs that gave up: {stuck:#?}");
    crate::support::assert_no_overlap(&logs);
}

/// F2: a run waiting behind a real run must not be left behind another user's process
/// that opened the old lockfile read-only and queued for it: the old lockfile is retired
/// when the first run takes D, so that descriptor locks a dead inode nobody waits on, and
/// the waiter goes in when the real run ends.
#[test]
fn adv_a_waiting_run_is_not_left_behind_a_foreigner_that_won_the_release() {
    if !require_root("adv_a_waiting_run_is_not_left_behind_a_foreigner_that_won_the_release") {
        return;
    }
    let sb = reachable_sandbox();
    old_lockfile(&sb.lockfile(D));
    let lockfile = sb.lockfile(D).display().to_string();
    let arm = sb.fifo("arm");
    fs::set_permissions(&arm.path, fs::Permissions::from_mode(0o666)).unwrap();
    let mut squatter = Background::spawn(as_nobody(&format!(
        "exec 3<'{lockfile}'; echo opened >&2; read x < '{}'; flock -x 3; echo squatting >&2; exec sleep 1000",
        arm.path.display()
    )));
    squatter.wait_for("opened");
    let gate = sb.fifo("release");
    let holder = super::hold_until(&sb, D, &gate);
    arm.release();
    // Through its old descriptor it gets the retired inode at once: nobody holds that.
    squatter.wait_for("squatting");
    let mut waiter = sb.cmd("ccci-lock");
    waiter.args(["-w", "15s", D, "--", "true"]);
    let mut waiter = Background::spawn(waiter);
    waiter.wait_for("waiting");
    gate.release();
    let (status, _) = holder.finish();
    assert!(status.success());
    let (which, line) = waiter.wait_for_any(&["acquired", "gave up"]);
    assert_eq!(which, 0, "the waiter was left behind the foreigner: {line}");
}
