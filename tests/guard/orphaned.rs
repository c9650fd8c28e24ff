//! The parent-pid rechecks after `PR_SET_PDEATHSIG`, on both sides of the fork.
//!
//! A parent-death signal is armed for the parent a process has *when it arms it*: a parent
//! that died a moment earlier never triggers it. The guard and its child each recheck
//! `getppid()` right after arming. To land a death in exactly that window, the test traces
//! the process with ptrace, stops it on entry to `prctl(PR_SET_PDEATHSIG)`, kills the
//! parent, proves the reparenting from `/proc`, and only then lets the `prctl` run. No
//! sleeps: the window is held open, not hoped for.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Run, comm_and_state, ppid};
use crate::support::{PATIENCE, bin};

/// `sh stop-then-exec.sh CMD...`: stops itself, and once continued becomes CMD. Tracing
/// starts while it is stopped, so nothing of CMD runs untraced.
const STOP_THEN_EXEC: &str = "kill -STOP $$; exec \"$@\"\n";

/// `sh stop-then-exec.sh ccci-guard ARGS...` in the run's sandbox: a guard that stops
/// itself before it starts, so that it can be traced from its first instruction.
pub(super) fn stopped_guard(run: &Run, args: &[&str]) -> Command {
    fs::write(run.sb.path("stop-then-exec.sh"), STOP_THEN_EXEC).unwrap();
    let mut guard = Command::new("sh");
    run.prepare(&mut guard);
    guard
        .arg("stop-then-exec.sh")
        .arg(bin("ccci-guard"))
        .args(args);
    guard
}

/// Waits on this thread's children and tracees only: the other tests' children belong to
/// other threads of this process and must not be reaped here.
pub(super) fn wait_here(pid: Option<Pid>) -> WaitStatus {
    waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD)).expect("waitpid")
}

pub(super) fn wait_until_stopped(pid: Pid) {
    let end = Instant::now() + PATIENCE;
    while comm_and_state(pid.as_raw()).map(|(_, s)| s) != Some('T') {
        assert!(Instant::now() < end, "{pid} never stopped itself");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Take `pid`, stopped by its own SIGSTOP, under this thread's ptrace and let it run again.
pub(super) fn seize_and_continue(pid: Pid, options: Options) {
    ptrace::seize(
        pid,
        options | Options::PTRACE_O_TRACESYSGOOD | Options::PTRACE_O_TRACEEXEC,
    )
    .expect("PTRACE_SEIZE (the e2e suite needs ptrace)");
    // Seizing a stopped process reports its group-stop.
    match wait_here(Some(pid)) {
        WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP) => {}
        other => panic!("expected the seized group-stop, got {other:?}"),
    }
    kill(pid, Signal::SIGCONT).unwrap();
}

/// Is `pid`, in a syscall-stop, entering `prctl(PR_SET_PDEATHSIG, ...)`?
fn arming_death_signal(pid: Pid) -> bool {
    syscall_entry(pid).is_some_and(|(nr, args)| {
        nr == libc::SYS_prctl as u64 && args[0] == libc::PR_SET_PDEATHSIG as u64
    })
}

/// The system call `pid`, in a syscall-stop, is entering: its number and arguments.
pub(super) fn syscall_entry(pid: Pid) -> Option<(u64, [u64; 6])> {
    // nix's `ptrace::syscall_info` passes a zero buffer size, so the kernel fills nothing:
    // ask directly, with the size.
    let mut info = std::mem::MaybeUninit::<libc::ptrace_syscall_info>::zeroed();
    // SAFETY: the kernel writes at most `size_of` bytes into the zeroed buffer.
    let got = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid.as_raw(),
            std::mem::size_of::<libc::ptrace_syscall_info>(),
            info.as_mut_ptr(),
        )
    };
    assert!(
        got > 0,
        "PTRACE_GET_SYSCALL_INFO: {}",
        nix::errno::Errno::last()
    );
    // SAFETY: zeroed is a valid value of this plain C struct, and the kernel filled it.
    let info = unsafe { info.assume_init() };
    if info.op != libc::PTRACE_SYSCALL_INFO_ENTRY {
        return None;
    }
    // SAFETY: `op` says the union holds a syscall entry.
    let entry = unsafe { info.u.entry };
    Some((entry.nr, entry.args))
}

/// Which process to hold at its `prctl(PR_SET_PDEATHSIG)`.
pub(super) enum Hold {
    /// The traced process itself.
    Itself(Pid),
    /// The child the traced process forks (with `PTRACE_O_TRACEFORK`).
    ChildOf(Pid),
}

/// Drive the tracees until the one `hold` names stops on entry to
/// `prctl(PR_SET_PDEATHSIG)`; return it, held there. Every other stop is resumed.
fn hold_at_death_signal(hold: Hold) -> Pid {
    hold_at(hold, "prctl(PR_SET_PDEATHSIG)", arming_death_signal)
}

/// Drive the tracees until the one `hold` names stops on entry to a system call `at`
/// recognises (`what` names it); return it, held there. Every other stop is resumed.
pub(super) fn hold_at(hold: Hold, what: &str, at: impl Fn(Pid) -> bool) -> Pid {
    let is_target = |pid: Pid| match hold {
        Hold::Itself(p) => pid == p,
        // Whatever reports a stop and is not the parent is the forked child: its first
        // stop may come before the parent's fork event.
        Hold::ChildOf(parent) => pid != parent,
    };
    let end = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < end, "no {what} seen");
        match wait_here(None) {
            WaitStatus::PtraceSyscall(pid) if is_target(pid) && at(pid) => {
                return pid;
            }
            WaitStatus::PtraceSyscall(pid) => ptrace::syscall(pid, None).unwrap(),
            // Exec, fork and a new child's first stop: carry on to the next syscall.
            WaitStatus::PtraceEvent(pid, _, _) => ptrace::syscall(pid, None).unwrap(),
            // A signal on its way in (the SIGCONT that resumed it): deliver it as sent.
            WaitStatus::Stopped(pid, signal) => ptrace::syscall(pid, signal).unwrap(),
            other => panic!("a tracee ended before {what}: {other:?}"),
        }
    }
}

fn wait_for_file(path: &std::path::Path) -> String {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(Instant::now() < end, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_and_reap(mut child: Child) {
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

#[test]
fn a_parent_that_dies_before_the_guard_arms_its_death_signal_still_ends_the_command() {
    let run = Run::new();
    fs::write(run.sb.path("stop-then-exec.sh"), STOP_THEN_EXEC).unwrap();
    // The step's shell, with the guard as its background child.
    let mut step = Command::new("sh");
    run.prepare(&mut step);
    step.args([
        "-c",
        "sh stop-then-exec.sh \"$@\" & echo $! > guard.pid; wait",
        "sh",
    ])
    .arg(bin("ccci-guard"))
    .args([
        "--deadline",
        "0",
        "--grace",
        "5s",
        "--report",
        "r.json",
        "--",
    ])
    .args(["sleep", "100"])
    .stderr(fs::File::create(run.sb.path("guard.log")).unwrap());
    let step = step.spawn().unwrap();
    let step_pid = step.id() as i32;
    let guard = Pid::from_raw(
        wait_for_file(&run.sb.path("guard.pid"))
            .trim()
            .parse()
            .unwrap(),
    );
    wait_until_stopped(guard);

    seize_and_continue(guard, Options::empty());
    ptrace::syscall(guard, None).unwrap();
    hold_at_death_signal(Hold::Itself(guard));
    // The guard is inside its set-up, its parent recorded, the signal not yet armed.
    kill_and_reap(step);
    let new_parent = ppid(guard.as_raw()).unwrap();
    assert_ne!(new_parent, step_pid, "the guard was reparented");
    ptrace::detach(guard, None).unwrap();

    // Armed now, the signal is for the new parent: only the recheck can notice.
    let report: serde_json::Value =
        serde_json::from_str(&wait_for_file(&run.sb.path("r.json"))).unwrap();
    assert_eq!(report["termination"]["cause"], "signal", "{report}");
    assert_eq!(report["termination"]["signal"], "TERM", "{report}");
    assert_eq!(
        report["signal"], "TERM",
        "the command was ended by it: {report}"
    );
    assert_eq!(report["exit_status"], 143, "{report}");
    let log = run.sb.read("guard.log");
    assert!(
        log.contains(&format!(
            "parent pid {step_pid} died before the guard could watch it"
        )),
        "{log}"
    );
    run.wait_until_nothing_alive();
}

#[test]
fn a_guard_that_dies_before_its_child_arms_the_death_signal_never_starts_the_command() {
    let run = Run::new();
    let guard = stopped_guard(
        &run,
        &[
            "-q",
            "--deadline",
            "0",
            "--",
            "sh",
            "-c",
            "echo started > started; exec sleep 100",
        ],
    )
    .spawn()
    .unwrap();
    let guard_pid = Pid::from_raw(guard.id() as i32);
    wait_until_stopped(guard_pid);

    seize_and_continue(guard_pid, Options::PTRACE_O_TRACEFORK);
    ptrace::cont(guard_pid, None).unwrap();
    let child = hold_at_death_signal(Hold::ChildOf(guard_pid));
    // The child is set up as far as its own session; the guard dies now.
    kill(guard_pid, Signal::SIGKILL).unwrap();
    loop {
        match wait_here(Some(guard_pid)) {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => break,
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                panic!("the guard ended otherwise")
            }
            _ => {}
        }
    }
    // `guard` (the std handle) was reaped just above; it is only dropped.
    drop(guard);
    assert_ne!(
        ppid(child.as_raw()),
        Some(guard_pid.as_raw()),
        "the child was reparented"
    );
    ptrace::detach(child, None).unwrap();

    // The child must notice, and exit without ever becoming the command.
    let end = Instant::now() + PATIENCE;
    loop {
        match comm_and_state(child.as_raw()) {
            None => break,
            Some((comm, 'Z')) => {
                assert_eq!(comm, "ccci-guard", "the child exec'd before exiting");
                break;
            }
            Some(_) => assert!(Instant::now() < end, "the orphaned child went on: {child}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!run.sb.path("started").exists(), "the command ran");
    run.wait_until_nothing_alive();
}
