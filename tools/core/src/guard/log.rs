//! The guard's log lines: one write(2) each, and never a stall.
//!
//! The guard shares its stderr with the command, and whoever reads it (Drone's runner)
//! may stop reading. A blocking write would then stop the guard's loop — after a deadline
//! the grace period would never run out and nothing would be KILLed. So a line waits at
//! most `PATIENCE_MS` for room; once one has been dropped, later lines do not wait at all
//! until a write gets through again, and then the first line that does says how many were
//! lost. The `--report` file carries the facts regardless.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long one line may wait for room on stderr, in milliseconds.
const PATIENCE_MS: u8 = 100;

/// Lines not written since the last line that was; nonzero means stderr looks wedged.
static DROPPED: AtomicU32 = AtomicU32::new(0);

/// Up to this many bytes a pipe write is atomic and, with a free slot, does not block.
const ATOMIC: usize = nix::libc::PIPE_BUF;

/// Write one log line (a newline is added). Lines over `ATOMIC` bytes are cut short.
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
        // At a character's first byte, not inside it.
        let mut end = ATOMIC - CUT.len();
        while end > 0 && buf[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        buf[end..end + CUT.len()].copy_from_slice(CUT);
        end + CUT.len()
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
    match write_line(&buf[..len]) {
        Ok(()) => DROPPED.store(0, Ordering::Relaxed),
        // Another writer took the room poll(2) saw.
        Err(Errno::EAGAIN) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {}
    }
}

/// Write `line` to stderr without blocking where it could block for good.
///
/// poll(2)'s "room" is only a snapshot: the command writes to the same pipe, and may take
/// that room first; a plain write would then wait for a reader that may never come.
/// `O_NONBLOCK` is no way out — it belongs to the open file description the guard shares
/// with the command. So a pipe or socket gets `pwritev2(2)` with `RWF_NOWAIT`, which
/// refuses instead of waiting. Where the kernel does not take that flag on pipes (older
/// kernels: `EOPNOTSUPP`), and for other files, the plain write.
fn write_line(mut line: &[u8]) -> Result<(), Errno> {
    let mut nowait = pipe_or_socket();
    while !line.is_empty() {
        let n = if nowait {
            let iov = libc::iovec {
                iov_base: line.as_ptr() as *mut libc::c_void,
                iov_len: line.len(),
            };
            // SAFETY: one iovec over the live `line`; offset -1 is "the current one".
            unsafe { libc::pwritev2(libc::STDERR_FILENO, &iov, 1, -1, libc::RWF_NOWAIT) }
        } else {
            // SAFETY: write(2) from the live `line`.
            unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) }
        };
        match Errno::result(n) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => line = &line[n as usize..],
            Err(Errno::EINTR) => {}
            Err(Errno::EOPNOTSUPP) if nowait => nowait = false,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn pipe_or_socket() -> bool {
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| {
        let kind = st.st_mode & libc::S_IFMT;
        kind == libc::S_IFIFO || kind == libc::S_IFSOCK
    })
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
