//! A tool process's start and end: the C `main` of a wrapper (`wrapper_main!`), the
//! descriptors and parent pid it records first, and `run_tool`, the edge every tool but
//! the guard ends at.

use super::output::say_line;
use crate::exit::{Exit, Failure};

static PARENT_AT_START: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Remember the parent pid as the very first thing a wrapper does (see
/// [`parent_at_start`]).
pub fn record_parent() {
    let ppid = nix::unistd::getppid().as_raw();
    PARENT_AT_START.store(ppid, std::sync::atomic::Ordering::Relaxed);
}

/// The parent pid when the process started, if recorded: a supervisor that arms its
/// parent-death signal later compares against this, so a parent that died during
/// start-up is noticed.
pub fn parent_at_start() -> Option<nix::unistd::Pid> {
    let ppid = PARENT_AT_START.load(std::sync::atomic::Ordering::Relaxed);
    (ppid > 0).then(|| nix::unistd::Pid::from_raw(ppid))
}

/// Make sure descriptors 0–2 are open (on /dev/null if the caller closed them), as
/// Rust's usual start-up does and a C `main` does not: otherwise the lockfile we open
/// next would get number 0, 1 or 2, and the command's first `2>/dev/null` would close
/// the lock.
pub fn open_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only inspects a descriptor number; open() is given a valid
        // NUL-terminated path and returns the lowest free number, i.e. `fd`.
        unsafe {
            if nix::libc::fcntl(fd, nix::libc::F_GETFD) == -1 {
                nix::libc::open(c"/dev/null".as_ptr(), nix::libc::O_RDWR);
            }
        }
    }
}

/// The entry point of a wrapper tool, in place of Rust's `fn main`.
///
/// Rust's runtime sets SIGPIPE to "ignore" before `main` runs, and an ignored signal stays
/// ignored across exec, so a command run by a wrapper with an ordinary `main` would never
/// die of a broken pipe (`yes | head` would spin on EPIPE). Starting from a C `main`
/// skips that, so the command gets exactly the dispositions the caller gave us. The
/// crate using it must say `#![no_main]`; std itself (args, env, threads, `exit`
/// flushing stdout) works as usual. What Rust's start-up would have done that we need —
/// descriptors 0–2 open — is done here.
#[macro_export]
macro_rules! wrapper_main {
    ($run:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::cli::record_parent();
            $crate::cli::open_standard_fds();
            // A bug must still end as "the tool failed" (125), never as a status that
            // reads like the command's (an abort would look like 134 = SIGABRT).
            let status: i32 = ::std::panic::catch_unwind($run).unwrap_or(125);
            ::std::process::exit(status)
        }
    };
}

/// The one edge every tool ends at: the status of `result`, after printing a failure as
/// one line named with the tool (its causes after colons). A failure whose status is not
/// its own gets the tool's `default`.
pub fn run_tool(tool: &str, default: Exit, result: Result<i32, Failure>) -> i32 {
    match result {
        Ok(status) => status,
        Err(failure) => {
            say_line(&format!("{tool}: {:#}", failure.error));
            failure.exit.unwrap_or(default).code()
        }
    }
}
