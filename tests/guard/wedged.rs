//! A stderr that fills up between `poll(2)` saying it has room and the guard's write: the
//! command writes to the same pipe, and may take that room first. A blocking write would
//! then stop the guard until someone reads — after a deadline, the KILL would never
//! come. The test holds the guard (ptrace) on entry to its first write to stderr, fills
//! the pipe, and lets the write go on.

use std::fs;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::ptrace::{self, Options};
use nix::unistd::Pid;

use super::orphaned::{
    Hold, hold_at, seize_and_continue, stopped_guard, syscall_entry, wait_until_stopped,
};
use super::{Run, comm_and_state, exit_within, fill};
use crate::support::PATIENCE;

/// Is `pid`, in a syscall-stop, entering a write to its stderr?
fn writing_to_stderr(pid: Pid) -> bool {
    let writes = [libc::SYS_write, libc::SYS_writev, libc::SYS_pwritev2];
    syscall_entry(pid).is_some_and(|(nr, args)| writes.contains(&(nr as i64)) && args[0] == 2)
}

/// Whether this kernel can refuse a pipe write instead of blocking (`RWF_NOWAIT` on
/// pipes): the only way to write to a pipe shared with others without ever blocking.
fn pipes_take_nowait() -> bool {
    let (_read, write) = nix::unistd::pipe().unwrap();
    let byte = [0u8];
    let iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: one iovec over a live one-byte buffer.
    let n = unsafe {
        libc::pwritev2(
            std::os::fd::AsRawFd::as_raw_fd(&write),
            &iov,
            1,
            -1,
            libc::RWF_NOWAIT,
        )
    };
    n == 1
}

#[test]
fn a_stderr_that_fills_between_the_poll_and_the_write_does_not_stop_the_guard() {
    if !pipes_take_nowait() {
        // CI runs on a kernel that has it: there, a skip would hide a regression.
        assert!(
            std::env::var_os("CI").is_none(),
            "this kernel cannot write to a pipe with RWF_NOWAIT, and CI must run this test"
        );
        eprintln!("skipped: this kernel cannot write to a pipe with RWF_NOWAIT");
        return;
    }
    let run = Run::new();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut guard = stopped_guard(
        &run,
        &["-d", "0.3", "-k", "0.3", "--report", "r.json", "--"],
    );
    guard
        .args(["sh", "-c", "trap '' TERM; sleep 100"])
        .stderr(write_end.try_clone().unwrap());
    let mut guard = guard.spawn().unwrap();
    let pid = Pid::from_raw(guard.id() as i32);
    wait_until_stopped(pid);
    seize_and_continue(pid, Options::empty());
    ptrace::syscall(pid, None).unwrap();
    hold_at(Hold::Itself(pid), "a write to stderr", writing_to_stderr);
    // poll(2) has said there is room; another writer takes all of it.
    fill(&write_end);
    ptrace::detach(pid, None).unwrap();

    let status = exit_within(&mut guard, "the guard hung on its stderr");
    assert_eq!(status.code(), Some(137), "the grace period ended in a KILL");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["outcome"], "killed", "{r}");
    run.assert_nothing_alive();
    drop(read_end);
}

#[test]
fn the_sweeps_kill_goes_out_before_the_line_that_announces_it() {
    // The line may wait for room on stderr (up to 100 ms); the KILL must not wait with it.
    // The guard is held on entry to its first write (with -q: the "grace over" line), and
    // the leftover, which ignores TERM, must already be dead by then.
    let run = Run::new();
    let mut guard = stopped_guard(
        &run,
        &["-q", "-k", "0.3", "--report", "r.json", "--", "sh", "-c"],
    );
    guard.arg(
        "sh -c 'trap \"\" TERM; echo $$ > leftover.pid; exec sleep 100' & \
             until [ -s leftover.pid ]; do sleep 0.01; done; exit 0",
    );
    let mut guard = guard.spawn().unwrap();
    let pid = Pid::from_raw(guard.id() as i32);
    wait_until_stopped(pid);
    seize_and_continue(pid, Options::empty());
    ptrace::syscall(pid, None).unwrap();
    hold_at(Hold::Itself(pid), "a write to stderr", writing_to_stderr);
    let leftover: i32 = run.sb.read("leftover.pid").trim().parse().unwrap();
    let end = Instant::now() + PATIENCE;
    loop {
        match comm_and_state(leftover) {
            None | Some((_, 'Z')) => break,
            Some(_) => assert!(
                Instant::now() < end,
                "the guard announced the KILL before sending it: {leftover} still runs"
            ),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ptrace::detach(pid, None).unwrap();
    let status = guard.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the command's own status");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["leftovers"][0]["pid"], leftover, "{r}");
    assert_eq!(r["leftovers"][0]["signal"], "KILL", "{r}");
    run.assert_nothing_alive();
}
