//! Parsing a tool's command line: the right status on a usage error, empty variables
//! counted as unset, duration arguments, and regex options.
//!
//! clap exits 2 on a usage error, but a wrapper's 2 would be indistinguishable from its
//! command's own 2, so wrappers map usage errors to 125 (`timeout(1)` does the same).

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use crate::exit::Exit;

use super::output::{say_line, write_stderr};

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

/// A clap value parser for durations (`90s`, `25m`, `1h30m`, `0.5`).
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// A regex option's value, compiled; a bad one is named with both places it may have come
/// from (clap took it from the option, its variable or the default).
pub fn regex_arg(re: &str, option: &str, var: &str) -> anyhow::Result<regex::Regex> {
    regex::Regex::new(re)
        .map_err(|e| anyhow::anyhow!("invalid regex {re:?} ({option} or {var}): {e}"))
}
