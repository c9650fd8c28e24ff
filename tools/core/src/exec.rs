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
/// failure: not found → 127, anything else (not executable, a directory, ...) → 126.
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
    if errno == Errno::ENOENT && exists_on_path(&argv[0]) {
        // The file is there; what is missing is its `#!` interpreter or its loader.
        return fail(
            format!("{} (its interpreter or loader is missing)", errno.desc()),
            Exit::CannotExecute,
        );
    }
    let status = if errno == Errno::ENOENT {
        Exit::NotFound
    } else {
        Exit::CannotExecute
    };
    fail(errno.desc().to_owned(), status)
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
