//! Replacing this process with the command a wrapper runs.
//!
//! `execvp(3)` directly rather than std's `Command::exec`: std resets the signal mask and
//! SIGPIPE's disposition in the new image, and a wrapper must hand the command exactly
//! what its caller gave it. Environment additions go through `execvpe`, which searches
//! `PATH` as the caller set it.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::exit::Exit;

/// Why the command could not be run, with the status a wrapper exits with.
#[derive(Debug, thiserror::Error)]
#[error("cannot run '{program}': {reason}")]
pub struct ExecError {
    program: String,
    reason: String,
    pub status: Exit,
}

/// Exec `argv` with `env_add` set on top of the current environment. Returns only on
/// failure, with the status of [`failure`].
pub fn exec(argv: &[OsString], env_add: &[(&str, &OsStr)]) -> ExecError {
    let program = argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |reason: String, status| ExecError {
        program: program.clone(),
        reason,
        status,
    };
    let Ok(args) = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>, _>>()
    else {
        return fail(
            "an argument contains a NUL byte".into(),
            Exit::CannotExecute,
        );
    };
    let Some(file) = args.first() else {
        return fail("no command given".into(), Exit::ToolFailed);
    };
    let mut env: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if env_add.iter().any(|(k, _)| OsStr::new(k) == key) {
            continue;
        }
        let mut pair = key;
        pair.push("=");
        pair.push(value);
        env.extend(cstring(&pair).ok());
    }
    for (key, value) in env_add {
        let mut pair = OsString::from(key);
        pair.push("=");
        pair.push(value);
        env.extend(cstring(&pair).ok());
    }
    let errno = match nix::unistd::execvpe(file, &args, &env) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let (reason, status) = failure(&argv[0], errno);
    fail(reason, status)
}

/// Why exec'ing `program` failed with `errno`, and the status every wrapper exits with
/// for it — one meaning for the guard (which forks) and for lock and rundir (which exec):
/// 127 only when the command itself does not exist. A file that is there but whose `#!`
/// interpreter or ELF loader is missing also fails with `ENOENT`; it was found, so it is
/// 126, as the shell says, with the reason named (`timeout(1)` and `env(1)` say 127).
pub fn failure(program: &OsStr, errno: Errno) -> (String, Exit) {
    match errno {
        Errno::ENOENT if exists_on_path(program) => (
            format!("{} (its interpreter or loader is missing)", errno.desc()),
            Exit::CannotExecute,
        ),
        Errno::ENOENT => (errno.desc().to_owned(), Exit::NotFound),
        _ => (errno.desc().to_owned(), Exit::CannotExecute),
    }
}

/// Whether `program` names an existing file, as `execvp` would look for it.
fn exists_on_path(program: &OsStr) -> bool {
    let exists = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    if program.as_bytes().contains(&b'/') {
        return exists(std::path::Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path).any(|dir| exists(&dir.join(program)))
}

fn cstring(s: &OsStr) -> Result<CString, std::ffi::NulError> {
    CString::new(s.as_bytes())
}
