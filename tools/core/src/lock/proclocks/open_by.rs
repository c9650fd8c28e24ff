//! Processes, and what they have open: scanning `/proc/*/fd`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

/// A process that has a file open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenBy {
    pub pid: i32,
    pub comm: String,
}

impl OpenBy {
    pub(super) fn of(pid: i32) -> OpenBy {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        OpenBy {
            pid,
            comm: comm.trim().to_owned(),
        }
    }
}

/// Processes for one line: `pid 4242 (cc-ci-run), pid 4243 (sh)`, their names made plain
/// (a name is the process's own choice, and may hold anything).
pub fn describe(holders: &[OpenBy]) -> String {
    let who: Vec<String> = holders
        .iter()
        .map(|h| format!("pid {} ({})", h.pid, crate::lock::holder::plain(&h.comm)))
        .collect();
    who.join(", ")
}

/// Every process with a descriptor open on `path` (scanning `/proc/*/fd`): who leaks a
/// lock when its holder has been gone for hours. Costly (every fd of every process), so
/// only for locks already judged stale.
pub fn processes_with_open(path: &std::path::Path) -> Vec<OpenBy> {
    // By inode, not by name: the lock dir may be reached through a symlink
    // (/var/lock -> /run/lock), and `/proc/<pid>/fd/<n>` shows the canonical path.
    let Ok(target) = fs::metadata(path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for proc in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let has_it = fs::read_dir(proc.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::metadata(fd.path())
                    .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
            });
        if has_it {
            found.push(OpenBy::of(pid));
        }
    }
    found
}

/// A process that went away while we looked (`ENOENT`, `ESRCH`), or one this user may not
/// look at (another user's, when not root): passed over, as it always was. Anything else —
/// `EMFILE` above all — is an error: we cannot tell.
pub(super) fn out_of_sight(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.kind() == io::ErrorKind::PermissionDenied
        || e.raw_os_error() == Some(nix::libc::ESRCH)
}

/// Every process in sight.
pub(super) fn all_pids() -> io::Result<impl Iterator<Item = i32>> {
    Ok(fs::read_dir("/proc")?
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_processes_with_a_file_open() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let open = processes_with_open(tmp.path());
        assert!(
            open.iter().any(|o| o.pid == std::process::id() as i32),
            "{open:?}"
        );
    }
}
