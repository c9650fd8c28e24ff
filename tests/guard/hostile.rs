//! The guard where its environment works against it: system calls refused by a seccomp
//! profile, descriptors taken by its caller, no /proc or another namespace's, a launcher
//! whose threads die one by one. Whatever it is denied, the guard must still end every
//! leftover, exit with the command's status (or refuse up front with 125), and never hang.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Run, comm_and_state, number_after};
use crate::support::Background;

/// In the child, before exec: make the system calls `nrs` fail with `errno` (a seccomp
/// filter, as a container runtime's profile would), so the guard runs under it.
fn deny_syscalls(cmd: &mut Command, errno: u32, nrs: &'static [u32]) {
    // SAFETY: only prctl(2) with a filter built on the stack; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut filter: Vec<libc::sock_filter> = Vec::new();
            let stmt = |code: u32, k: u32| libc::sock_filter {
                code: code as u16,
                jt: 0,
                jf: 0,
                k,
            };
            // Load the syscall number (offset 0 of seccomp_data).
            filter.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0));
            for &nr in nrs {
                filter.push(libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: nr,
                });
                filter.push(stmt(
                    libc::BPF_RET | libc::BPF_K,
                    libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
                ));
            }
            filter.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

const PIDFD_OPEN: u32 = 434;
const PIDFD_SEND_SIGNAL: u32 = 424;

/// `ccci-guard -k 1 -- sh -c '<two leftovers>; exit 4'` under `deny`: the guard must
/// still end both leftovers and exit 4, within the suite's patience.
fn leftovers_are_swept_under(errno: u32, nrs: &'static [u32]) {
    let run = Run::new();
    let mut cmd = run.guard(&["-q", "-k", "1", "--", "sh", "-c"]);
    cmd.arg("setsid sleep 300 & a=$!; sleep 301 & echo \"leftovers $a $!\" >&2; exit 4");
    deny_syscalls(&mut cmd, errno, nrs);
    let mut guard = Background::spawn(cmd);
    let line = guard.wait_for("leftovers ");
    let setsid = number_after(&line, "leftovers");
    let bg: i32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    // The grace is 1 s: 10 s is plenty for the sweep to end them and the guard to exit.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let alive: Vec<i32> = [setsid, bg]
        .into_iter()
        .filter(|p| comm_and_state(*p).is_some_and(|(_, s)| s != 'Z'))
        .collect();
    for p in &alive {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    assert!(
        status.is_some(),
        "the guard never exited (grace 1s); leftovers alive: {alive:?}; saw {:?}",
        guard.seen
    );
    assert_eq!(status.unwrap().code(), Some(4), "{:?}", guard.seen);
    assert!(alive.is_empty(), "leftovers outlived the guard: {alive:?}");
    run.assert_nothing_alive();
}

#[test]
fn pidfd_open_refused_with_eperm_still_sweeps_every_leftover() {
    // Docker's default seccomp profile answered pidfd_open with EPERM until
    // moby/moby#41665 (2020). Any error but ESRCH must mean "no pidfd: kill(2) after the
    // start-time check"; taken as "not pinned", nothing got TERM or KILL and the guard
    // waited for its leftovers forever.
    leftovers_are_swept_under(libc::EPERM as u32, &[PIDFD_OPEN, PIDFD_SEND_SIGNAL]);
}

#[test]
fn pidfd_send_signal_refused_still_ends_every_leftover() {
    // pidfd_open allowed, pidfd_send_signal refused (even as ENOSYS): a held pidfd whose
    // send fails must fall back to kill(2) after the start-time check, or the leftovers
    // live on and the guard waits for them forever.
    leftovers_are_swept_under(libc::ENOSYS as u32, &[PIDFD_SEND_SIGNAL]);
}

#[test]
fn inherited_descriptors_at_the_top_of_the_limit_cost_no_leftover_its_term() {
    // `ulimit -n 40`, and the caller leaves fds 24..39 open (no FD_CLOEXEC). Counting the
    // numbers above the lowest free one as free, the guard held pidfds until no
    // descriptor was left, and then the start-time check's own open(2) failed: every
    // later leftover was skipped without a TERM (only 18 of 100 got one), and the KILL
    // line counted 18. Every one must get TERM, and the KILL line must count all 100.
    let run = Run::new();
    let _idle = run.sb.fifo("idle");
    let leftover = "trap 'echo \"term $$\" >> terms' TERM; exec 3<>idle; \
                    echo \"start $$\" >> starts; while :; do read x <&3; done";
    let command = "i=0; while [ $i -lt 100 ]; do sh -c \"$1\" & i=$((i + 1)); done; \
                   until [ \"$(cat starts 2>/dev/null | wc -l)\" -ge 100 ]; do sleep 0.01; done";
    let mut cmd = run.guard(&["-q", "-k", "3", "--report", "r.json", "--", "sh", "-c"]);
    cmd.arg(command).arg("sh").arg(leftover);
    // SAFETY: setrlimit(2), open(2) and dup2(2) only, in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            for fd in 24..40 {
                libc::dup2(null, fd);
            }
            libc::close(null);
            Ok(())
        });
    }
    let guard = Background::spawn(cmd);
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let count = |name: &str| {
        run.sb
            .read(name)
            .lines()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(count("starts"), 100);
    assert_eq!(
        count("terms"),
        100,
        "leftovers that got no TERM before the KILL: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("grace 3s over — sending KILL to 100 processes")),
        "{lines:?}"
    );
    run.assert_nothing_alive();
}

#[test]
fn a_pid_namespace_without_its_own_proc_is_refused_before_the_command_runs() {
    // `unshare -fp` without --mount-proc: /proc is the parent namespace's. The guard, ns
    // pid 2, would walk /proc/2 (kthreadd there, whose "children" are kernel threads) and
    // pin their host pids with pidfd_open in its own namespace: a sibling that is no
    // descendant of the guard got TERM. It must refuse with 125, naming /proc, before
    // its command runs, and signal no one.
    if !crate::support::require_root("a pid namespace") {
        return;
    }
    let run = Run::new();
    let driver = r#"
        "$0" -q -k 2 -- sh -c 'echo command-ran >&2; sleep 1' &
        guard=$!
        sh -c 'trap "echo sibling got TERM >&2; exit 7" TERM; while :; do sleep 0.1; done' &
        sibling=$!
        echo "guard $guard sibling $sibling" >&2
        wait $guard
        echo "guard-exited $?" >&2
        kill -KILL $sibling
        wait $sibling
        echo "sibling-exited $?" >&2
    "#;
    let mut cmd = Command::new("unshare");
    run.prepare(&mut cmd);
    cmd.args(["-fp", "sh", "-c", driver])
        .arg(crate::support::bin("ccci-guard"));
    let ns = Background::spawn(cmd);
    let (status, lines) = ns.finish();
    assert!(status.success(), "{lines:?}");
    let line = |needle: &str| lines.iter().find(|l| l.contains(needle));
    let pids = line(" sibling ").expect("the driver's pids");
    assert_eq!(number_after(pids, "guard"), 2, "{pids}");
    assert_eq!(
        line("sibling got TERM"),
        None,
        "the guard signalled a stranger: {lines:?}"
    );
    assert_eq!(line("command-ran"), None, "the command ran: {lines:?}");
    assert!(line("guard-exited 125").is_some(), "{lines:?}");
    assert!(line("sibling-exited 137").is_some(), "{lines:?}");
    assert!(
        line("/proc is not this pid namespace's").is_some_and(|l| l.contains("--mount-proc")),
        "{lines:?}"
    );
}

/// A launcher with many threads: one starts the guard and ends; the others idle.
const THREAD_ENDS: &str = r#"
import os, subprocess, sys, threading, time
ev = threading.Event()
for _ in range(30):
    threading.Thread(target=ev.wait, daemon=True).start()
def start():
    p = subprocess.Popen(sys.argv[1:])
    while not os.path.exists("started"):
        time.sleep(0.005)
t = threading.Thread(target=start); t.start(); t.join()
os.write(2, b"thread-ended\n")
time.sleep(100)
"#;

/// A launcher with many threads: one starts the guard and stays; the others idle.
const THREAD_STAYS: &str = r#"
import os, subprocess, sys, threading, time
ev = threading.Event()
for _ in range(30):
    threading.Thread(target=ev.wait, daemon=True).start()
def start():
    subprocess.Popen(sys.argv[1:])
    ev.wait()
threading.Thread(target=start, daemon=True).start()
while not os.path.exists("started"):
    time.sleep(0.005)
os.write(2, b"launched\n")
time.sleep(100)
"#;

/// Run the guard under the Python `launcher`, wait for `ready` (and any other of
/// `before`) on its stderr, SIGKILL the launcher, and return the "lives on" lines the
/// guard logged before it said the parent died.
fn lives_on_lines_when_a_threaded_launcher_is_killed(
    launcher: &str,
    ready: &[&str],
) -> Vec<String> {
    let run = Run::new();
    std::fs::write(run.sb.path("l.py"), launcher).unwrap();
    let mut cmd = Command::new("python3");
    run.prepare(&mut cmd);
    cmd.arg("l.py")
        .arg(crate::support::bin("ccci-guard"))
        .args([
            "-q",
            "-k",
            "3",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term >&2; exit 4' TERM; sleep 100 & echo > started; wait",
        ]);
    let mut launcher = Background::spawn(cmd);
    let mut seen = vec![false; ready.len()];
    while seen.contains(&false) {
        let (which, _) = launcher.wait_for_any(ready);
        seen[which] = true;
    }
    kill(Pid::from_raw(launcher.pid() as i32), Signal::SIGKILL).unwrap();
    // The guard signals first and logs after: the command's "got-term" may come first.
    let mut lives_on = Vec::new();
    let mut got_term = false;
    loop {
        let (which, line) = launcher.wait_for_any(&["lives on", "died; sending TERM", "got-term"]);
        match which {
            0 => lives_on.push(line),
            1 => break,
            _ => got_term = true,
        }
    }
    if !got_term {
        launcher.wait_for("got-term");
    }
    run.wait_until_nothing_alive();
    let (_, rest) = launcher.finish();
    assert!(
        !rest.iter().any(|l| l.contains("already terminating")),
        "the one death logged again: {rest:?}"
    );
    lives_on
}

#[test]
fn a_threaded_launcher_killed_after_its_thread_ended_is_said_to_live_on_only_once() {
    // The thread that started the guard ends: one "lives on" line, rightly. Then the
    // launcher is SIGKILLed: its 30 other threads exit one by one, each moving the guard
    // to the next and sending the parent-death signal again while getppid() is still the
    // launcher. That is its death, not a line per thread saying it lives on (there were
    // up to 29 before "died").
    let lines = lives_on_lines_when_a_threaded_launcher_is_killed(
        THREAD_ENDS,
        &["thread-ended", "lives on"],
    );
    assert!(
        lines.is_empty(),
        "{} more 'lives on': {lines:?}",
        lines.len()
    );
}

#[test]
fn a_threaded_launcher_killed_is_never_said_to_live_on() {
    // As above, but the thread that started the guard stays until the SIGKILL: every
    // parent-death signal comes from the launcher dying, and none may be logged as
    // "lives on" (the guard sees the SIGKILL pending, or the process exiting).
    let lines = lives_on_lines_when_a_threaded_launcher_is_killed(THREAD_STAYS, &["launched"]);
    assert!(
        lines.is_empty(),
        "a real death logged as 'lives on': {lines:?}"
    );
}

#[test]
fn without_procfs_the_guard_refuses_before_the_command_runs() {
    // No procfs (a chroot or sandbox without /proc, here a tmpfs on it): the walk would
    // find no leftover, and the sweep would wait forever for the child waitpid still
    // shows, losing the command's status and leaving its `sleep` behind. The guard must
    // refuse with 125, naming /proc, before the command runs.
    if !crate::support::require_root("a mount namespace") {
        return;
    }
    let run = Run::new();
    let mut cmd = Command::new("unshare");
    run.prepare(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs none /proc && exec \"$0\" -q -k 1 -- sh -c 'sleep 300 & echo \"left $!\" >&2; exit 5'",
    ])
    .arg(crate::support::bin("ccci-guard"));
    let guard = Background::spawn(cmd);
    let (status, lines) = guard.finish();
    assert_eq!(status.code(), Some(125), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("left ")),
        "the command ran: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/proc is not a procfs") && l.contains("mount -t proc")),
        "{lines:?}"
    );
}
