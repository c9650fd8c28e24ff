//! Forwarding, the second TERM held back, the ESRCH regression, the start-up race and
//! the caller's signal state reaching the command.

use std::fs;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::unistd::Pid;

use super::Run;
use crate::support::{Background, PATIENCE};

fn term(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
}

#[test]
fn a_second_term_is_held_back_while_the_command_cleans_up() {
    let run = Run::new();
    let gate = run.sb.fifo("gate");
    // The cleanup runs in a child shell with TERM at its default: a forwarded second TERM
    // would kill it before it could say "cleanup-done".
    let script = format!(
        "trap 'echo cleanup-start >&2; sh -c \"read x < {gate}; echo cleanup-done >&2\"; \
         trap - TERM; kill -TERM $$' TERM; echo ready >&2; sleep 100 & wait",
        gate = gate.path.display()
    );
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", &script]));
    guard.wait_for("ready");
    term(guard.pid());
    guard.wait_for("cleanup-start");
    term(guard.pid());
    let line = guard.wait_for("already terminating");
    let left = line
        .strip_prefix("ccci-guard: already terminating; KILL in ")
        .unwrap_or_else(|| panic!("{line}"));
    let left = ccci_core::duration::parse(left).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(left <= Duration::from_secs(300), "{line}");
    gate.release();
    guard.wait_for("cleanup-done");
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(143), "{lines:?}");
    run.assert_nothing_alive();
}

#[test]
fn the_first_term_is_forwarded_to_the_whole_group_and_the_status_is_the_commands() {
    let run = Run::new();
    let script = "trap 'echo \"sh got TERM\" >&2; wait; exit 7' TERM; \
                  sh -c 'trap \"echo child got TERM >&2; exit 0\" TERM; echo child-ready >&2; \
                  sleep 100 & wait' & echo parent-ready >&2; wait";
    let mut guard =
        Background::spawn(run.guard(&["-q", "--report", "r.json", "--", "sh", "-c", script]));
    let mut seen = [false; 2];
    while seen != [true, true] {
        seen[guard.wait_for_any(&["child-ready", "parent-ready"]).0] = true;
    }
    term(guard.pid());
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(7), "{lines:?}");
    assert!(lines.iter().any(|l| l == "sh got TERM"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "child got TERM"), "{lines:?}");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["outcome"], "terminated");
    assert_eq!(r["termination"]["cause"], "signal");
    assert_eq!(r["code"], 7);
    run.assert_nothing_alive();
}

#[test]
fn usr1_is_forwarded_as_it_comes() {
    let run = Run::new();
    let script = "trap 'echo got-usr1 >&2; exit 5' USR1; echo ready >&2; sleep 100 & wait";
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", script]));
    guard.wait_for("ready");
    kill(Pid::from_raw(guard.pid() as i32), Signal::SIGUSR1).unwrap();
    guard.wait_for("got-usr1");
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(5), "{lines:?}");
    run.assert_nothing_alive();
}

#[test]
fn esrch_regression_term_after_the_command_exited_keeps_status_0() {
    // The old wrapper's trap ran `kill -TERM -- -$PID` after the group was gone; under
    // `sh -e` the ESRCH turned a green build red. Here the command exits 0 and its group
    // is gone; a setsid'd leftover holds the guard in its final sweep (it traps TERM and
    // waits on a gate) while the guard itself gets TERM.
    let run = Run::new();
    let gate = run.sb.fifo("gate");
    // `wait` in the trap: the sweep TERMs the leftover's sleep too, and that SIGCHLD
    // must not interrupt the trap's blocking open of the gate.
    let leftover = format!(
        "trap 'echo leftover-got-term >&2; wait; read x < {}; exit 0' TERM; \
         : > leftover-ready; sleep 100 & wait",
        gate.path.display()
    );
    // The command waits for the leftover's trap to be in place (its mark file), then
    // exits 0.
    let mut cmd = run.guard(&["-q", "--report", "r.json", "--", "sh", "-c"]);
    cmd.arg("setsid sh -c \"$1\" & until [ -e leftover-ready ]; do sleep 0.01; done; exit 0")
        .arg("sh")
        .arg(&leftover);
    let mut guard = Background::spawn(cmd);
    guard.wait_for("leftover-got-term");
    term(guard.pid());
    guard.wait_for("already terminating");
    gate.release();
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["outcome"], "exited");
    assert_eq!(r["exit_status"], 0);
    assert_eq!(r["termination"], serde_json::Value::Null);
    assert_eq!(r["leftovers"].as_array().unwrap().len(), 2, "{r}");
    run.assert_nothing_alive();
}

#[test]
fn esrch_regression_under_sh_e_the_script_goes_on() {
    let run = Run::new();
    let out = run
        .sh("set -e; \"$0\" -- true; \"$0\" -- sh -c 'sleep 100 & exit 0'; echo after")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after\n");
    run.assert_nothing_alive();
}

#[test]
fn a_term_right_after_the_fork_is_never_lost() {
    // TERM is sent the moment the guard has a child — between fork and exec, or just
    // after. It must reach the command (143, the guard exiting normally), never kill the
    // guard nor vanish (then `sleep 100` would run on and the bound would fail).
    let run = Run::new();
    for round in 0..40 {
        let guard = Background::spawn(run.guard(&["-q", "--", "sleep", "100"]));
        let pid = guard.pid();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let end = Instant::now() + PATIENCE;
        while fs::read_to_string(&children)
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            assert!(
                Instant::now() < end,
                "round {round}: the guard never forked"
            );
            std::thread::yield_now();
        }
        term(pid);
        let (status, lines) = guard.finish();
        assert_eq!(
            status.code(),
            Some(143),
            "round {round}: {status:?} {lines:?}"
        );
    }
    run.assert_nothing_alive();
}

/// Block USR2 and WINCH, ignore HUP, INT and CHLD — in the child, before exec.
fn with_odd_signal_state(cmd: &mut std::process::Command) {
    // SAFETY: only async-signal-safe calls (sigprocmask, sigaction) in the forked child.
    unsafe {
        cmd.pre_exec(|| {
            let mut blocked = SigSet::empty();
            blocked.add(Signal::SIGUSR2);
            blocked.add(Signal::SIGWINCH);
            blocked.thread_block()?;
            for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGCHLD] {
                signal(s, SigHandler::SigIgn)?;
            }
            Ok(())
        });
    }
}

#[test]
fn the_command_sees_the_callers_signal_mask_and_ignored_set() {
    // Straight from the test, not through a shell: dash resets the mask at start-up.
    let run = Run::new();
    let listing = |mut cmd: std::process::Command| {
        with_odd_signal_state(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let grep = ["grep", "-E", "SigBlk|SigIgn", "/proc/self/status"];
    let mut outside = std::process::Command::new(grep[0]);
    outside.args(&grep[1..]);
    let outside = listing(outside);
    let inside = listing(run.guard(&["-q", "--", grep[0], grep[1], grep[2], grep[3]]));
    let field = |name: &str| {
        outside
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap_or_else(|| panic!("no {name} in {outside}"))
    };
    let bit = |s: Signal| 1u64 << (s as i32 - 1);
    assert_eq!(
        field("SigBlk:") & bit(Signal::SIGUSR2),
        bit(Signal::SIGUSR2)
    );
    assert_eq!(field("SigIgn:") & bit(Signal::SIGHUP), bit(Signal::SIGHUP));
    assert_eq!(
        outside, inside,
        "the command's signal state differs from its caller's"
    );
}

#[test]
fn a_caller_that_ignores_sigchld_still_gets_the_commands_status() {
    // With SIGCHLD ignored the kernel would reap the command behind the guard's back.
    let run = Run::new();
    let mut cmd = run.guard(&["-q", "--", "sh", "-c", "exit 9"]);
    // SAFETY: sigaction only, in the forked child.
    unsafe {
        cmd.pre_exec(|| {
            signal(Signal::SIGCHLD, SigHandler::SigIgn)?;
            Ok(())
        });
    }
    let status = crate::support::within(Duration::from_secs(20), "the guard", move || {
        cmd.status().unwrap()
    });
    assert_eq!(status.code(), Some(9));
}

#[test]
fn hup_int_and_quit_are_termination_requests_too() {
    let run = Run::new();
    for (signal, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGQUIT, "QUIT"),
    ] {
        let report = format!("{name}.json");
        let script =
            "trap 'echo got-it >&2; exit 3' HUP INT QUIT; echo ready >&2; sleep 100 & wait";
        let mut guard =
            Background::spawn(run.guard(&["-q", "--report", &report, "--", "sh", "-c", script]));
        guard.wait_for("ready");
        kill(Pid::from_raw(guard.pid() as i32), signal).unwrap();
        guard.wait_for("got-it");
        let (status, lines) = guard.finish();
        assert_eq!(status.code(), Some(3), "{name}: {lines:?}");
        let r: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(run.sb.path(&report)).unwrap()).unwrap();
        assert_eq!(r["outcome"], "terminated", "{name}");
        assert_eq!(r["termination"]["signal"], name);
    }
    run.assert_nothing_alive();
}

#[test]
fn a_command_killed_by_a_real_time_signal_is_128_plus_n_not_a_hang() {
    let run = Run::new();
    let out = crate::support::output_within(run.guard(&["-q", "--", "sh", "-c", "kill -s 34 $$"]));
    assert_eq!(out.status.code(), Some(128 + 34));
    run.assert_nothing_alive();
}

#[test]
fn a_forwarded_term_wakes_a_stopped_command_so_its_cleanup_runs() {
    let run = Run::new();
    let script = "trap 'echo cleanup-ran >&2; exit 0' TERM; echo stopping >&2; kill -STOP $$";
    let mut guard = Background::spawn(run.guard(&["-q", "-k", "20", "--", "sh", "-c", script]));
    guard.wait_for("stopping");
    // Wait until the command is really stopped (state T in /proc), then TERM the guard.
    let end = Instant::now() + PATIENCE;
    let child = loop {
        let stopped = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            (super::ppid(pid)? == guard.pid() as i32 && super::comm_and_state(pid)?.1 == 'T')
                .then_some(pid)
        });
        if let Some(pid) = stopped {
            break pid;
        }
        assert!(Instant::now() < end, "the command never stopped");
        std::thread::sleep(Duration::from_millis(5));
    };
    term(guard.pid());
    guard.wait_for("cleanup-ran");
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?} (pid {child})");
    run.assert_nothing_alive();
}

#[test]
fn alrm_and_tstp_neither_kill_nor_stop_the_guard() {
    let run = Run::new();
    let gate = run.sb.fifo("gate");
    let script = format!("echo ready >&2; read x < '{}'; exit 7", gate.path.display());
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", &script]));
    guard.wait_for("ready");
    for s in [Signal::SIGALRM, Signal::SIGTSTP, Signal::SIGVTALRM] {
        kill(Pid::from_raw(guard.pid() as i32), s).unwrap();
    }
    gate.release();
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(7), "{lines:?}");
}

#[test]
fn real_time_signals_neither_kill_the_guard() {
    // Their default action ends a process too, and nix's `Signal` lists none of them; 32
    // and 33 are the two glibc keeps for its threads (the guard has none). A stray
    // `kill -RTMIN` must not leave the command unsupervised and its leftovers unswept.
    let run = Run::new();
    let gate = run.sb.fifo("gate");
    let script = format!("echo ready >&2; read x < '{}'; exit 7", gate.path.display());
    let mut guard = Background::spawn(run.guard(&["-q", "--", "sh", "-c", &script]));
    guard.wait_for("ready");
    let (min, max) = (nix::libc::SIGRTMIN(), nix::libc::SIGRTMAX());
    for signo in [32, 33, min, min + 2, max] {
        // SAFETY: kill(2) with plain numbers.
        let sent = unsafe { nix::libc::kill(guard.pid() as i32, signo) };
        assert_eq!(sent, 0, "kill -{signo}");
    }
    gate.release();
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(7), "{status:?} {lines:?}");
    run.assert_nothing_alive();
}

/// `python3 signals.py NAME [--setsid]`: appends `ready PID` to the file NAME, then
/// `NAME got SIG PID` (to the file and stderr) for each TERM or USR1; exits on USR1. No
/// child processes, so it forks nothing the test's pid arithmetic would have to allow for.
const SIGNAL_LOGGER: &str = r#"
import os, signal, sys
name = sys.argv[1]
if "--setsid" in sys.argv:
    os.setsid()
def mark(line):
    with open(name, "a") as f:
        f.write(line + "\n")
def on(signo, _):
    line = f"{name} got {signal.Signals(signo).name.removeprefix('SIG')} {os.getpid()}"
    mark(line)
    os.write(2, (line + "\n").encode())
    if signo == signal.SIGUSR1:
        sys.exit(0)
for s in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(s, on)
mark(f"ready {os.getpid()}")
while True:
    signal.pause()
"#;

#[test]
fn after_the_command_is_reaped_forwarded_signals_reach_only_the_leftovers_not_a_reused_group() {
    // Once the guard has reaped the command, the command's pid — its old process group id —
    // is free. In a pid namespace of its own the test hands that very pid to an unrelated
    // process that leads a group of its own (`ns_last_pid`), while the guard waits out its
    // grace for a TERM-ignoring, setsid'd leftover. A USR1 to the guard must reach the
    // leftover, which the guard holds a pidfd for, and never the stranger.
    if !crate::support::require_root("pid reuse in a new pid namespace") {
        return;
    }
    let run = Run::new();
    fs::write(run.sb.path("signals.py"), SIGNAL_LOGGER).unwrap();
    // Runs as pid 1 of the new namespace; `$0` is the guard.
    let driver = r#"
        "$0" -q -k 1m --report r.json -- sh -c '
            setsid python3 signals.py leftover &
            until grep -q ready leftover 2>/dev/null; do sleep 0.01; done
            echo $$ > command.pid' &
        guard=$!
        # The leftover's TERM comes from the sweep, which starts once the command is reaped.
        until grep -q "got TERM" leftover 2>/dev/null; do sleep 0.01; done
        command=$(cat command.pid)
        echo $((command - 1)) > /proc/sys/kernel/ns_last_pid
        python3 signals.py stranger --setsid &
        stranger=$!
        until grep -q ready stranger 2>/dev/null; do sleep 0.01; done
        echo "command $command stranger $stranger" >&2
        kill -USR1 $guard
        wait $guard
        echo "guard-exited $?" >&2
        kill -KILL $stranger
    "#;
    let mut cmd = std::process::Command::new("unshare");
    run.prepare(&mut cmd);
    cmd.args(["-fp", "--mount-proc", "sh", "-c", driver])
        .arg(crate::support::bin("ccci-guard"));
    let mut ns = Background::spawn(cmd);
    let line = ns.wait_for("stranger");
    let command = super::number_after(&line, "command");
    let stranger = super::number_after(&line, "stranger");
    assert_eq!(
        command, stranger,
        "the stranger did not get the command's old pid: {line}"
    );
    let (which, line) = ns.wait_for_any(&["leftover got USR1", "stranger got USR1"]);
    assert_eq!(which, 0, "the USR1 went to the reused group: {line}");
    ns.wait_for("guard-exited 0");
    let (status, lines) = ns.finish();
    assert!(status.success(), "{status:?} {lines:?}");
    assert!(
        !run.sb.read("stranger").contains("got"),
        "{}",
        run.sb.read("stranger")
    );
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["outcome"], "exited", "{r}");
    assert_eq!(r["leftovers"][0]["comm"], "python3", "{r}");
    run.wait_until_nothing_alive();
}
