//! The host's granted flocks, from `/proc/locks` (proc(5)). Lines look like
//!
//! ```text
//! 1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010679 0 EOF
//! 1: -> FLOCK  ADVISORY  WRITE 4300 fe:00:10010679 0 EOF
//! ```
//!
//! where `->` marks a blocked request and the device is `major:minor` in hex.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::device::{dev_key, table_key};
use super::fdinfo::our_exclusive_flocks;

/// The granted flocks of the whole host, read once: a janitor pass over thousands of
/// lockfiles asks about each, and re-reading the table every time would cost
/// O(locks²).
#[derive(Debug, Default)]
pub struct LockTable {
    pub(super) holders: HashMap<(String, u64), Vec<i32>>,
}

impl LockTable {
    /// `None` when the table cannot be read (then the metadata is all there is): for
    /// naming holders to people, never for deciding that nobody holds a lock.
    pub fn read() -> Option<LockTable> {
        LockTable::load().ok()
    }

    /// The table, or why it cannot be read (`EMFILE` under a low `ulimit -n`): for
    /// decisions, where "cannot tell" must never pass for "nobody".
    pub fn load() -> io::Result<LockTable> {
        fs::read_to_string("/proc/locks")
            .map(|t| LockTable::parse(&t))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read /proc/locks: {e}")))
    }

    fn parse(table: &str) -> LockTable {
        let mut holders: HashMap<(String, u64), Vec<i32>> = HashMap::new();
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // id, FLOCK, ADVISORY, type, pid, maj:min:ino, ... (blocked requests: `->`)
            if let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() {
                let (Ok(pid), Some((dev, ino))) = (pid.parse(), file.rsplit_once(':')) else {
                    continue;
                };
                let Ok(ino) = ino.parse() else { continue };
                holders.entry((dev.to_owned(), ino)).or_default().push(pid);
            }
        }
        LockTable { holders }
    }

    /// The pids holding a granted flock on the file `meta` describes.
    pub fn holders(&self, meta: &fs::Metadata) -> Vec<i32> {
        self.holders_of(meta.dev(), meta.ino())
    }

    pub(super) fn holders_of(&self, dev: u64, ino: u64) -> Vec<i32> {
        self.holders
            .get(&(dev_key(dev), ino))
            .cloned()
            .unwrap_or_default()
    }

    /// This table without the flocks that an open file description of this process holds
    /// (`/proc/self/fdinfo`): whoever else holds those shares that description with us —
    /// our own run (a parent that passed us its descriptor, or our own lock) — and is
    /// never someone to wait for.
    pub fn without_our_own(mut self) -> io::Result<LockTable> {
        for (_, (dev, ino)) in our_exclusive_flocks()? {
            // Already as the table names it (from fdinfo): no translation.
            self.holders.remove(&(table_key(dev), ino));
        }
        Ok(self)
    }
}

/// The pids holding a granted flock on the file `meta` describes; `None` when the lock
/// table cannot be read.
pub fn flock_holders(meta: &fs::Metadata) -> Option<Vec<i32>> {
    LockTable::read().map(|t| t.holders(meta))
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
        let t = LockTable::parse(table);
        assert_eq!(t.holders_of(dev, 10010679), [4242]);
        assert_eq!(t.holders_of(dev, 555), [99]);
        assert!(t.holders_of(dev, 1).is_empty());
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
