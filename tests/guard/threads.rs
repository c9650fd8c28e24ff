//! A launcher that starts the guard from a worker thread (Python `threading`, Go, Java).
//!
//! The kernel's parent-death signal is armed for the *thread* that forked the guard: when
//! that thread ends, the signal comes although the launcher process lives on. Only a real
//! death of the parent process may end the command.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Run, number_after};
use crate::support::{Background, bin};

/// `python3 launcher.py GUARD ARGS...`: a worker thread starts the guard, waits until the
/// command has written `started` (by then the guard has armed its parent-death signal, so
/// the thread's end is certain to reach it) and ends without waiting for the guard. The
/// main thread lives on: it says so, then waits for the guard and exits with its status.
const LAUNCHER: &str = r#"
import os, subprocess, sys, threading, time

box = {}

def say(line):
    # One write(2) per line: print() writes the newline apart, and the guard's lines on
    # the same pipe could land in between.
    os.write(2, (line + "\n").encode())

def start():
    box["guard"] = subprocess.Popen(sys.argv[1:])
    while not os.path.exists("started"):
        time.sleep(0.005)

worker = threading.Thread(target=start)
worker.start()
worker.join()
say(f"thread-ended, guard {box['guard'].pid}")
code = box["guard"].wait()
say(f"guard-exited {code}")
sys.exit(code)
"#;

/// The command: the file `started` once its traps are set, `got-term` on TERM; on USR1
/// it writes `second-mark` and exits 0.
const COMMAND: &str = "trap 'echo got-term >&2; exit 1' TERM; \
                       trap 'echo second-mark >&2; kill $!; exit 0' USR1; \
                       sleep 100 & echo started > started; wait";

fn launcher(run: &Run) -> Background {
    fs::write(run.sb.path("launcher.py"), LAUNCHER).unwrap();
    let mut cmd = std::process::Command::new("python3");
    run.prepare(&mut cmd);
    cmd.arg("launcher.py")
        .arg(bin("ccci-guard"))
        .args(["-q", "--report", "r.json", "--", "sh", "-c", COMMAND]);
    Background::spawn(cmd)
}

/// Wait for the thread's end and the guard's judgement of it (in either order: the
/// guard may read its signal before Python prints); fail if the command got a TERM.
/// Returns the guard's pid.
fn thread_end_is_not_a_parent_death(launcher: &mut Background) -> i32 {
    let parent = launcher.pid();
    let (mut guard, mut judged) = (None, false);
    while guard.is_none() || !judged {
        let (which, line) =
            launcher.wait_for_any(&["thread-ended", "not a parent death", "got-term"]);
        match which {
            0 => guard = Some(number_after(&line, "guard")),
            1 => {
                assert!(
                    line.contains(&format!("parent pid {parent} lives on")),
                    "{line}"
                );
                judged = true;
            }
            _ => panic!(
                "the thread's end was taken for a parent death; saw {:?}",
                launcher.seen
            ),
        }
    }
    guard.unwrap()
}

#[test]
fn the_end_of_the_thread_that_started_the_guard_is_not_a_parent_death() {
    let run = Run::new();
    let mut launcher = launcher(&run);
    let guard = thread_end_is_not_a_parent_death(&mut launcher);
    // The command is still there to be asked: it answers, and exits 0.
    kill(Pid::from_raw(guard), Signal::SIGUSR1).unwrap();
    launcher.wait_for("second-mark");
    launcher.wait_for("guard-exited 0");
    let (status, lines) = launcher.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "got-term"), "{lines:?}");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["outcome"], "exited", "{r}");
    assert_eq!(r["termination"], serde_json::Value::Null, "{r}");
    run.assert_nothing_alive();
}

#[test]
fn the_death_of_the_launcher_after_its_thread_ended_still_ends_the_command() {
    // The parent-death signal stays armed when the kernel moves the guard to another
    // thread of the launcher: the launcher's own death must still reach the command.
    let run = Run::new();
    let mut launcher = launcher(&run);
    thread_end_is_not_a_parent_death(&mut launcher);
    let parent = launcher.pid();
    kill(Pid::from_raw(parent as i32), Signal::SIGKILL).unwrap();
    // The guard signals first and logs after: the two lines come in either order.
    let mut seen = [false; 2];
    while seen != [true, true] {
        let (which, line) = launcher.wait_for_any(&["got-term", "died"]);
        if which == 1 {
            assert!(
                line.contains(&format!("parent pid {parent} died; sending TERM")),
                "{line}"
            );
        }
        seen[which] = true;
    }
    run.wait_until_nothing_alive();
    let r: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(run.sb.path("r.json")).expect("the guard wrote its report"),
    )
    .unwrap();
    assert_eq!(r["outcome"], "terminated", "{r}");
    assert_eq!(r["termination"]["signal"], "TERM", "{r}");
    assert_eq!(r["exit_status"], 1, "{r}");
}
