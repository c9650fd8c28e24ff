//! Exec'ing the command under its lock, with the variables that name the lock.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use super::{Session, TOOL};
use crate::child::exec;
use crate::diag;
use crate::domain::Domain;
use crate::env::EnvVars;
use crate::lock::runlocks::RunHold;

/// Exec `command` with the lock's descriptor `fd` and the variables that name it; the
/// status to exit with when it cannot be exec'd (said first).
pub(super) fn exec_holding(command: &[OsString], fd: i32, file: &Path, domain: &Domain) -> i32 {
    let fd = fd.to_string();
    exec_with(command, OsStr::new(&fd), file, domain)
}

/// Exec `command` under `domain`, which this run holds above us or through a keeper:
/// there is no descriptor to pass on, and the tools below ask the kernel as we did. The
/// variables still say which lock the command runs under — not the outer one's domain
/// and descriptor number, which the environment carries into processes without it.
pub(super) fn exec_held_above(
    session: &Session,
    command: &[OsString],
    domain: &Domain,
    hold: RunHold,
) -> i32 {
    session.say_already_held(domain, hold);
    exec_with(
        command,
        OsStr::new(""),
        &session.dir.lockfile(domain),
        domain,
    )
}

fn exec_with(command: &[OsString], fd: &OsStr, file: &Path, domain: &Domain) -> i32 {
    let env = [
        (EnvVars::CCCI_LOCK_FD, fd),
        (EnvVars::CCCI_LOCK_FILE, file.as_os_str()),
        (EnvVars::CCCI_LOCK_DOMAIN, OsStr::new(domain.as_str())),
    ];
    let err = exec::exec(command, &env);
    diag!(TOOL, "{err}");
    err.status.code()
}
