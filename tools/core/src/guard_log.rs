//! The guard's log lines: one write(2) each, and never a stall.
//!
//! The guard shares its stderr with the command, and whoever reads it (Drone's runner)
//! may stop reading. A blocking write would then stop the guard's loop — after a deadline
//! the grace period would never run out and nothing would be KILLed. So a line waits at
//! most [`PATIENCE_MS`] for room; once one has been dropped, later lines do not wait at all
//! until a write gets through again, and then the first line that does says how many were
//! lost. The `--report` file carries the facts regardless.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long one line may wait for room on stderr, in milliseconds.
const PATIENCE_MS: u8 = 100;

/// Lines not written since the last line that was; nonzero means stderr looks wedged.
static DROPPED: AtomicU32 = AtomicU32::new(0);

/// Up to this many bytes a pipe write is atomic and, with a free slot, does not block.
const ATOMIC: usize = nix::libc::PIPE_BUF;

/// Write one log line (a newline is added). Lines over [`ATOMIC`] bytes are cut short.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut buf = [0u8; ATOMIC];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            cursor,
            "ccci-guard: ({dropped} log line{} lost: stderr was not being read)",
            if dropped == 1 { "" } else { "s" }
        );
    }
    let len = if writeln!(cursor, "{line}").is_ok() {
        cursor.position() as usize
    } else {
        // Too long for one atomic write: keep what fits, and say so.
        const CUT: &[u8] = " [...]\n".as_bytes();
        let _ = write!(cursor, "{line}");
        buf[ATOMIC - CUT.len()..].copy_from_slice(CUT);
        ATOMIC
    };
    let wait = if dropped > 0 {
        PollTimeout::ZERO
    } else {
        PollTimeout::from(PATIENCE_MS)
    };
    if !writable(wait) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SIGPIPE is blocked in the guard: a closed stderr fails this write, nothing more.
    if std::io::stderr().write_all(&buf[..len]).is_ok() {
        DROPPED.store(0, Ordering::Relaxed);
    }
}

/// Whether stderr can take a line without blocking (an error or hang-up counts: the
/// write then fails at once instead of blocking).
fn writable(wait: PollTimeout) -> bool {
    let stderr = std::io::stderr();
    let mut fds = [PollFd::new(stderr.as_fd(), PollFlags::POLLOUT)];
    loop {
        match poll(&mut fds, wait) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}
