//! The keeper: a process that holds a dependency app's lock for the rest of a run.
//!
//! A run deploys its cold dependencies as apps of their own, each under its own lock,
//! taken while the harness runs (`ccci-lock --for-run D`) and held, like the app's, until
//! the run ends. `ccci-lock` cannot exec anything to hold it, so it starts a keeper: this
//! very program again, which takes the lock itself (so the kernel's lock table names it),
//! holds a pidfd of the run's top ([`crate::lock::runlocks::run_top`]) and waits on it.
//! When the top ends — the harness exited, crashed or was killed — the keeper exits and
//! the kernel releases the lock; the janitor then reaps what is left like any orphan.
//!
//! The keeper tells the starter it holds the lock by one line on a pipe, its stdout, and
//! then lets go of every stream it had: a harness that reads a tool's output to its end
//! (`subprocess.run(..., capture_output=True)`) must not wait for a keeper that lives on.
//! Until then it dies with its starter (`PR_SET_PDEATHSIG`): a cancelled wait leaves no
//! keeper behind to take the lock later. Once it holds the lock it ignores TERM, INT, HUP
//! and QUIT: a cancel signals the run's whole process group, and the harness tears the
//! dependency down after that, under its lock. It ends when the top ends, or with the
//! guard's last-resort KILL.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// What the keeper says once it holds the lock.
const HELD: &[u8] = b"held\n";

/// How starting a keeper ended.
#[derive(Debug)]
pub enum Started {
    /// It holds the lock now, and will until the run's top ends.
    Held { keeper: u32 },
    /// It exited without holding it (not acquired, or it failed: it said why on stderr).
    Ended(ExitStatus),
}

/// Start `program args...` as a keeper and wait until it holds the lock or has ended.
pub fn start(program: &std::path::Path, args: &[OsString]) -> io::Result<Started> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let starter = std::process::id() as libc::pid_t;
    // SAFETY: prctl(2), getppid(2) and close_range(2) are async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // A starter killed between fork and prctl sent no signal: the keeper would
            // live on, reparented, and take the lock for a run that saw --for-run fail.
            // (ESRCH: no allocation between fork and exec.)
            if libc::getppid() != starter {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Nothing the starter was given beyond 0-2 goes on into a process that lives
            // as long as the run: a pipe passed down would see its end only then, and
            // whoever reads it to its end would wait that long. The keeper opens what it
            // needs itself. (Linux >= 5.11; on an older kernel they are inherited.)
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let mut said = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut said)?;
    if said == HELD {
        // Not waited for: it lives on, and whoever reaps orphans here reaps it.
        return Ok(Started::Held { keeper: child.id() });
    }
    Ok(Started::Ended(child.wait()?))
}

/// In the keeper, once it holds the lock: tell the starter, let go of our streams, and
/// wait until the run's top (`top`, a pidfd) has ended. Then return, and let the process
/// exit to release the lock.
pub fn keep_until_end(top: OwnedFd) -> io::Result<()> {
    // A cancel or the deadline TERMs the run's whole process group, us included, and the
    // harness then tears the dependency down — under its lock, which must still be held.
    // So from now on only the top's end counts (or the guard's last-resort KILL); before
    // the starter hears we hold it, so a signal that came first ended us, lock and all.
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_IGN installs no handler of ours.
        unsafe { signal(sig, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    // Dying with the starter was for the wait.
    // SAFETY: prctl(2) with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    io::stdout().write_all(HELD)?;
    io::stdout().flush()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for stream in 0..=2 {
        // SAFETY: dup2(2) onto our own standard streams, which nothing else uses now.
        if unsafe { libc::dup2(null.as_raw_fd(), stream) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    loop {
        let mut fds = [PollFd::new(top.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A pidfd of `pid`, for [`keep_until_end`].
pub fn pin(pid: i32) -> io::Result<OwnedFd> {
    crate::child::tree::pidfd_open(pid).map_err(io::Error::from)
}
