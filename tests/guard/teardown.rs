//! Nothing outlives the guard: the final sweep, the subreaper, inherited locks, and the
//! two parent-death paths (a Drone cancel, and the guard itself SIGKILLed).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Run, comm_and_state, number_after, ppid, wait_for_mark};
use crate::support::Background;

#[test]
fn setsid_grandchildren_do_not_outlive_the_guard() {
    let run = Run::new();
    let mut cmd = run.guard(&["--", "sh", "-c"]);
    cmd.arg("sleep 100 & echo \"bg $!\" >&2; setsid sleep 100 & echo \"setsid $!\" >&2; exit 0");
    let guard = Background::spawn(cmd);
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let pid_of = |word: &str| {
        let line = lines.iter().find(|l| l.starts_with(word)).unwrap();
        number_after(line, word)
    };
    let finish = lines
        .iter()
        .find(|l| l.contains("exited with status 0"))
        .unwrap();
    assert!(
        finish.contains("; ended 2 leftover processes: "),
        "{finish}"
    );
    for pid in [pid_of("bg"), pid_of("setsid")] {
        assert!(
            finish.contains(&format!("{pid} (")),
            "{pid} not named: {finish}"
        );
        assert_eq!(comm_and_state(pid), None, "pid {pid} is still there");
    }
    run.assert_nothing_alive();
}

#[test]
fn orphans_are_reparented_to_the_guard_and_reaped_by_it() {
    let run = Run::new();
    let gate = run.sb.fifo("gate");
    let script = format!(
        "sh -c 'sleep 100 & echo \"orphan $!\" >&2'; echo parent-gone >&2; read x < {}",
        gate.path.display()
    );
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", &script]));
    let orphan = number_after(&guard.wait_for("orphan"), "orphan");
    guard.wait_for("parent-gone");
    assert_eq!(
        ppid(orphan),
        Some(guard.pid() as i32),
        "the orphan was not reparented to the guard (subreaper)"
    );
    gate.release();
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    assert_eq!(
        comm_and_state(orphan),
        None,
        "the orphan is left (or a zombie)"
    );
    run.assert_nothing_alive();
}

#[test]
fn a_daemon_holding_an_inherited_flock_is_ended_before_the_guard_exits() {
    let run = Run::new();
    let lockfile = run.path("held.lock");
    let mut cmd = run.guard(&["-q", "--", "sh", "-c"]);
    cmd.arg("exec 9>\"$1\"; flock 9; setsid sleep 100 & echo daemon-started >&2; exit 0")
        .arg("sh")
        .arg(&lockfile);
    let (status, lines) = Background::spawn(cmd).finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    assert!(lines.iter().any(|l| l == "daemon-started"), "{lines:?}");
    let free = Command::new("flock")
        .args(["-n", &lockfile, "true"])
        .status()
        .unwrap();
    assert!(free.success(), "the daemon still holds the lock");
    run.assert_nothing_alive();
}

#[test]
fn drone_cancel_sigkill_of_the_step_shell_runs_the_commands_term_cleanup() {
    // Drone's exec runner cancels a build by SIGKILLing the step's `/bin/sh` only: no
    // TERM, no process group. The guard's parent-death signal turns that into a TERM for
    // the command, whose trap must run, and then nothing may be left.
    let run = Run::new();
    let mark = run.path("cleanup");
    let command = format!(
        "trap 'echo cleanup-ran > \"{mark}\"; exit 0' TERM; \
         setsid sh -c 'echo $$ > daemon; exec sleep 100' & \
         until [ -s daemon ]; do sleep 0.01; done; \
         echo \"ready $$ $PPID\" >&2; sleep 100 & wait"
    );
    // Drone's step: `/bin/sh -e` running the guard, then more of the script.
    let mut step = Command::new("/bin/sh");
    run.prepare(&mut step);
    step.args([
        "-e",
        "-c",
        "\"$0\" -q --report r.json -- sh -c \"$1\"; echo after >&2",
    ])
    .arg(crate::support::bin("ccci-guard"))
    .arg(&command);
    let mut step = Background::spawn(step);
    let ready = step.wait_for("ready");
    let guard_pid = number_after(&ready, &number_after(&ready, "ready").to_string());
    assert_eq!(
        ppid(guard_pid),
        Some(step.pid() as i32),
        "the guard is the shell's child"
    );
    kill(Pid::from_raw(step.pid() as i32), Signal::SIGKILL).unwrap();
    wait_for_mark(std::path::Path::new(&mark), "cleanup-ran");
    run.wait_until_nothing_alive();
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.sb.path("r.json")).expect("the guard wrote its report"),
    )
    .unwrap();
    assert_eq!(r["outcome"], "terminated");
    assert_eq!(r["exit_status"], 0);
    let daemon: i32 = std::fs::read_to_string(run.sb.path("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        r["leftovers"][0]["pid"], daemon,
        "the setsid'd sleep was swept: {r}"
    );
    let (_, lines) = step.finish();
    assert!(!lines.iter().any(|l| l == "after"), "{lines:?}");
}

#[test]
fn sigkill_of_the_guard_itself_sends_term_to_the_command() {
    let run = Run::new();
    let mark = run.path("got-term");
    let command = format!(
        "trap 'echo got-term > \"{mark}\"; exit 0' TERM; echo \"ready $$\" >&2; sleep 100 & wait"
    );
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", &command]));
    let command_pid = number_after(&guard.wait_for("ready"), "ready");
    kill(Pid::from_raw(guard.pid() as i32), Signal::SIGKILL).unwrap();
    wait_for_mark(std::path::Path::new(&mark), "got-term");
    let (status, _) = guard.finish();
    assert_eq!(status.signal(), Some(9));
    // The command itself exits through its trap. Its `sleep` is nobody's to end now —
    // the guard that would have swept it is gone; `Run` kills it when the test ends.
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    while comm_and_state(command_pid).is_some_and(|(_, state)| state != 'Z') {
        assert!(std::time::Instant::now() < end, "the command did not exit");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn every_leftover_gets_term_first_whatever_the_open_files_limit() {
    // Under `ulimit -n 40` the guard cannot hold a pidfd for each of 100 leftovers. Each
    // must still get TERM before any KILL. These ignore it (a trap that only writes a
    // mark), so the pidfds the guard does hold stay held through the grace period: a
    // leftover left without one would hear nothing until the KILL at its end.
    let run = Run::new();
    let _idle = run.sb.fifo("idle");
    // No child processes: `read` on a fifo nobody writes waits, and the trap interrupts it.
    let leftover = "trap 'echo \"term $$\" >> terms' TERM; exec 3<>idle; \
                    echo \"start $$\" >> starts; while :; do read x <&3; done";
    let command = "i=0; while [ $i -lt 100 ]; do sh -c \"$1\" & i=$((i + 1)); done; \
                   until [ \"$(cat starts 2>/dev/null | wc -l)\" -ge 100 ]; do sleep 0.01; done";
    let mut cmd =
        run.sh("ulimit -n 40; exec \"$0\" -q -k 10m --report r.json -- sh -c \"$1\" sh \"$2\"");
    cmd.arg(command).arg(leftover);
    let guard = Background::spawn(cmd);
    let pids = |name: &str, word: &str| -> std::collections::BTreeSet<i32> {
        run.sb
            .read(name)
            .lines()
            .map(|l| number_after(l, word))
            .collect()
    };
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    while pids("terms", "term").len() < 100 {
        assert!(
            std::time::Instant::now() < end,
            "only {} of 100 leftovers got TERM: {:?}",
            pids("terms", "term").len(),
            pids("terms", "term")
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = pids("starts", "start");
    assert_eq!(pids("terms", "term"), started);
    // They ignore TERM, and the grace period is long: end them here.
    for pid in &started {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    }
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    let leftovers = r["leftovers"].as_array().unwrap();
    assert_eq!(leftovers.len(), 100, "{r}");
    assert!(leftovers.iter().all(|l| l["signal"] == "TERM"), "{r}");
    run.assert_nothing_alive();
}
