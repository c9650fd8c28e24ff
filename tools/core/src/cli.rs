//! What every tool's command line shares: parsing with the right status on error, and
//! duration arguments.
//!
//! clap exits 2 on a usage error, but a wrapper's 2 would be indistinguishable from its
//! command's own 2, so wrappers map usage errors to 125 (`timeout(1)` does the same).

use std::io::{self, Write};
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use crate::exit::Exit;

/// Parse the command line, or exit: `--help`/`--version` with 0, a usage error with
/// `usage_status` after a message prefixed with the tool's name.
pub fn parse_or_exit<T: Parser>(tool: &str, usage_status: Exit) -> T {
    let parsed = without_empty_env(T::command())
        .try_get_matches()
        .and_then(|mut matches| {
            // As clap's own `try_parse`: the error gets the command's usage.
            T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut T::command()))
        });
    match parsed {
        Ok(cli) => cli,
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = err.print();
                Exit::Success.exit()
            }
            _ => {
                match domain_taken_for_an_option(&err) {
                    Some(e) => say_line(&format!("{tool}: {e}")),
                    None => write_stderr(&format!("{tool}: {}", err.render())),
                }
                std::process::exit(usage_status.code())
            }
        },
    }
}

/// A variable set to the empty string counts as unset (docs/environment.md): clap would
/// hand the empty value to the parser, so its binding is dropped before parsing. The
/// environment itself is left alone — the command inherits it as it was.
fn without_empty_env(mut cmd: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |arg| arg.env(None));
    }
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, without_empty_env);
    }
    cmd
}

/// `ccci-lock -a.b -- cmd` is a domain starting with `-`, which clap reads as the
/// unknown option `-a`. Say what it is — an invalid domain, quoted whole — instead.
fn domain_taken_for_an_option(err: &clap::Error) -> Option<crate::domain::DomainError> {
    use clap::error::{ContextKind, ContextValue};
    if err.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let token = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .filter_map(|a| a.into_string().ok())
        .find(|a| a.starts_with(flag.as_str()) && !a.starts_with("--"))?;
    let domain_like = token.contains('.')
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if domain_like {
        crate::domain::Domain::parse(&token).err()
    } else {
        None
    }
}

/// The one edge every tool ends at: the status of `result`, after printing a failure as
/// one line named with the tool (its causes after colons). A failure whose status is not
/// its own gets the tool's `default`.
pub fn run_tool(tool: &str, default: Exit, result: Result<i32, crate::exit::Failure>) -> i32 {
    match result {
        Ok(status) => status,
        Err(failure) => {
            say_line(&format!("{tool}: {:#}", failure.error));
            failure.exit.unwrap_or(default).code()
        }
    }
}

/// A clap value parser for durations (`90s`, `25m`, `1h30m`, `0.5`).
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Write one line to stderr in a single `write(2)`, so lines of processes sharing a CI
/// log never interleave mid-line (`eprintln!` writes piecemeal). A diagnostic that
/// cannot be written is dropped: it must never turn into a failure of its own.
pub fn say_line(line: &str) {
    write_stderr(&format!("{line}\n"));
}

fn write_stderr(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Data on stdout, in one piece; a failure to write it (a full disk, a closed pipe) is
/// the tool's failure, which the caller reports.
pub fn emit(text: &str) -> io::Result<()> {
    emit_bytes(text.as_bytes())
}

/// As [`emit`], for data that need not be UTF-8 (paths).
pub fn emit_bytes(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(data)?;
    out.flush()
}

/// A progress or log line on stderr (`== app lock: ... ==`), written in one piece.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(&format!($($arg)*))
    };
}

/// A diagnostic line on stderr, prefixed with the tool's name, written in one piece.
#[macro_export]
macro_rules! diag {
    ($tool:expr, $($arg:tt)*) => {
        $crate::cli::say_line(&format!("{}: {}", $tool, format_args!($($arg)*)))
    };
}

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
