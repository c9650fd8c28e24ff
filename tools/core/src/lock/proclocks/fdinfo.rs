//! The flocks of one open file description, from its `/proc/<pid>/fdinfo/<fd>` (proc(5)):
//! the kernel lists there, as `lock:` lines in the format of `/proc/locks`, the locks
//! owned by that very description — not others on the inode.

use std::fs;
use std::io;

/// This process's descriptors whose open file description holds an exclusive flock,
/// lowest fd first, each with the locked file's `(dev, inode)` (`/proc/self/fdinfo`).
///
/// An error when they cannot be read (`EMFILE`): the caller cannot tell what it holds.
pub fn our_exclusive_flocks() -> io::Result<Vec<(i32, (u64, u64))>> {
    let unreadable =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot read /proc/self/fdinfo: {e}"));
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/fdinfo").map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let Some(fd) = entry.file_name().to_str().and_then(|f| f.parse().ok()) else {
            continue;
        };
        let info = match fs::read_to_string(entry.path()) {
            Ok(info) => info,
            // Closed since the listing (the listing's own descriptor, for one).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unreadable(e)),
        };
        if let Some(file) = exclusive_flock_in_fdinfo(&info) {
            found.push((fd, file));
        }
    }
    found.sort_by_key(|(fd, _)| *fd);
    Ok(found)
}

/// The file an exclusive flock of *this* open file description is on, from its
/// `/proc/<pid>/fdinfo/<fd>`: the kernel lists there, as `lock:` lines in the format of
/// `/proc/locks`, the locks owned by that very description — not others on the inode.
/// Returns the `(dev, ino)` of the locked file.
pub fn exclusive_flock_in_fdinfo(fdinfo: &str) -> Option<(u64, u64)> {
    flock_in_fdinfo(fdinfo, true)
}

/// As [`exclusive_flock_in_fdinfo`], for a flock of either kind (`LOCK_SH` too).
pub fn any_flock_in_fdinfo(fdinfo: &str) -> Option<(u64, u64)> {
    flock_in_fdinfo(fdinfo, false)
}

fn flock_in_fdinfo(fdinfo: &str, exclusive_only: bool) -> Option<(u64, u64)> {
    fdinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.strip_prefix("lock:")?.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, kind, _, file, ..] if !exclusive_only || *kind == "WRITE" => {
                let mut parts = file.split(':');
                let major = u64::from_str_radix(parts.next()?, 16).ok()?;
                let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
                let ino = parts.next()?.parse().ok()?;
                Some((nix::sys::stat::makedev(major, minor), ino))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_tells_an_exclusive_flock_of_this_description() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let fdinfo =
            || fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
        assert_eq!(exclusive_flock_in_fdinfo(&fdinfo()), None);
        file.lock_shared().unwrap();
        assert_eq!(
            exclusive_flock_in_fdinfo(&fdinfo()),
            None,
            "shared is not exclusive"
        );
        file.lock().unwrap();
        let (dev, ino) = exclusive_flock_in_fdinfo(&fdinfo()).expect("exclusive lock listed");
        assert_eq!((dev, ino), (meta.dev(), meta.ino()));
        // Another description of the same file does not own that lock.
        let other = fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", other.as_raw_fd())).unwrap();
        assert_eq!(exclusive_flock_in_fdinfo(&info), None);
    }
}
