//! Deleting a directory tree without ever reaching outside it.
//!
//! std's `remove_dir_all` already never follows a symlink (it works with `openat` /
//! `unlinkat` and `O_NOFOLLOW`), but it does descend into a mount point: a bind mount of
//! the canonical abra tree inside a run's `state/` would be emptied with the run. So
//! before deleting, the mount table (`/proc/self/mountinfo`, proc(5)) is read, and a tree
//! with anything mounted at or below it is refused, untouched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Remove `path` and everything below it, refusing if anything is mounted in it.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    refuse_mounts(path)?;
    fs::remove_dir_all(path)
}

/// Remove everything inside the directory `path`, keeping the directory.
pub fn empty_dir(path: &Path) -> io::Result<()> {
    refuse_mounts(path)?;
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn refuse_mounts(path: &Path) -> io::Result<()> {
    let root = fs::canonicalize(path)?;
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mount_points(&table)
        .into_iter()
        .find(|m| m.starts_with(&root))
    {
        Some(mount) => Err(io::Error::other(format!(
            "{} is a mount point inside {} — not removing anything there",
            mount.display(),
            path.display()
        ))),
        None => Ok(()),
    }
}

/// The mount points of a mountinfo table (field 5, with `\040`-style octal escapes).
fn mount_points(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[i], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_points_with_escapes() {
        let table = "36 35 98:0 /mnt1 /mnt/with\\040space rw - ext3 /dev/root rw\n\
                     22 1 0:21 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(table),
            [PathBuf::from("/mnt/with space"), PathBuf::from("/proc")]
        );
    }

    #[test]
    fn removes_a_plain_tree_and_refuses_one_holding_a_mount_point() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("t");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), "x").unwrap();
        empty_dir(&tree).unwrap();
        assert_eq!(fs::read_dir(&tree).unwrap().count(), 0);
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        // `/` always has mount points below it (/proc at least).
        assert!(refuse_mounts(Path::new("/")).is_err());
    }
}
