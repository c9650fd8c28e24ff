//! Who the kernel says holds a flock: `/proc/locks` (proc(5)).
//!
//! Holder metadata is only what the last holder wrote: after it exits the file keeps it,
//! so a lock taken since by `flock(1)` (which writes nothing) would be reported under a
//! dead pid. The kernel's lock table names the process that placed each lock, and for a
//! `ccci-lock` holder that is the command's pid too (exec keeps the pid). Lines look like
//!
//! ```text
//! 1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010679 0 EOF
//! 1: -> FLOCK  ADVISORY  WRITE 4300 fe:00:10010679 0 EOF
//! ```
//!
//! where `->` marks a blocked request and the device is `major:minor` in hex.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// The pids holding a granted flock on the file `meta` describes; `None` when the lock
/// table cannot be read (then the metadata is all there is).
pub fn flock_holders(meta: &fs::Metadata) -> Option<Vec<i32>> {
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(holders_in(&table, meta.dev(), meta.ino()))
}

fn holders_in(table: &str, dev: u64, ino: u64) -> Vec<i32> {
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // id, FLOCK, ADVISORY, type, pid, dev:ino, ... (blocked requests have `->`)
            match fields.as_slice() {
                [_, "FLOCK", _, _, pid, file, ..] if *file == wanted => pid.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// A process that has a file open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenBy {
    pub pid: i32,
    pub comm: String,
}

/// Every process with a descriptor open on `path` (scanning `/proc/*/fd`): who leaks a
/// lock when its holder has been gone for hours. Costly (every fd of every process), so
/// only for locks already judged stale.
pub fn processes_with_open(path: &std::path::Path) -> Vec<OpenBy> {
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
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path));
        if has_it {
            let comm = fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
            found.push(OpenBy {
                pid,
                comm: comm.trim().to_owned(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_granted_flocks_on_the_inode_and_skips_waiters() {
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let table = "\
1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010679 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4300 fe:00:10010679 0 EOF
2: POSIX  ADVISORY  WRITE 17 fe:00:10010679 0 EOF
3: FLOCK  ADVISORY  READ 99 fe:00:555 0 EOF
4: FLOCK  ADVISORY  WRITE 98 fe:01:10010679 0 EOF
";
        assert_eq!(holders_in(table, dev, 10010679), [4242]);
        assert_eq!(holders_in(table, dev, 555), [99]);
        assert!(holders_in(table, dev, 1).is_empty());
    }

    #[test]
    fn finds_the_processes_with_a_file_open() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let open = processes_with_open(tmp.path());
        assert!(
            open.iter().any(|o| o.pid == std::process::id() as i32),
            "{open:?}"
        );
    }

    #[test]
    fn sees_a_real_flock() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(flock_holders(&meta), Some(vec![]));
        file.lock().unwrap();
        assert_eq!(flock_holders(&meta), Some(vec![std::process::id() as i32]));
    }
}
