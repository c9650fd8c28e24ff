//! What every tool's command line shares: parsing with the right status on error, and
//! duration arguments.
//!
//! clap exits 2 on a usage error, but a wrapper's 2 would be indistinguishable from its
//! command's own 2, so wrappers map usage errors to 125 (`timeout(1)` does the same).

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use crate::exit::Exit;

/// Parse the command line, or exit: `--help`/`--version` with 0, a usage error with
/// `usage_status` after a message prefixed with the tool's name.
pub fn parse_or_exit<T: Parser>(tool: &str, usage_status: Exit) -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = err.print();
                Exit::Success.exit()
            }
            _ => {
                match domain_taken_for_an_option(&err) {
                    Some(e) => eprintln!("{tool}: {e}"),
                    None => eprint!("{tool}: {}", err.render()),
                }
                std::process::exit(usage_status.code())
            }
        },
    }
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

/// A clap value parser for durations (`90s`, `25m`, `1h30m`, `0.5`).
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Print a diagnostic line on stderr, prefixed with the tool's name.
#[macro_export]
macro_rules! diag {
    ($tool:expr, $($arg:tt)*) => {
        eprintln!("{}: {}", $tool, format_args!($($arg)*))
    };
}

/// The entry point of a wrapper tool, in place of Rust's `fn main`.
///
/// Rust's runtime sets SIGPIPE to "ignore" before `main` runs, and an ignored signal stays
/// ignored across exec, so a command run by a wrapper with an ordinary `main` would never
/// die of a broken pipe (`yes | head` would spin on EPIPE). Starting from a C `main`
/// skips that, so the command gets exactly the dispositions the caller gave us. The
/// crate using it must say `#![no_main]`; std itself (args, env, threads, `exit`
/// flushing stdout) works as usual.
#[macro_export]
macro_rules! wrapper_main {
    ($run:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            let status: i32 = $run();
            ::std::process::exit(status)
        }
    };
}
