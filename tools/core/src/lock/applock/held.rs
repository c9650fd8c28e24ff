//! Who holds a domain beyond the lockfile we would lock: this process already (a nested
//! lock of the same domain must not wait for itself), or a run through a lockfile
//! removed by hand (step 6).

use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;

use crate::domain::Domain;
use crate::lock::lockdir::{self, LockDir};
use crate::lock::proclocks::{self, LockTable, OpenBy};

/// The lock on `domain` that this process already holds, if any: one of our own open
/// descriptors whose open file description holds an exclusive flock (the kernel says so
/// in `/proc/self/fdinfo/<fd>`, proc(5)) on the inode the lockfile path names — checked
/// after, so nobody can unlink the file in between (only a holder may).
///
/// Only the kernel is asked, never `CCCI_LOCK_DOMAIN` / `CCCI_LOCK_FD`: a nested lock of
/// another domain overwrites those, and `ccci-lock D -- ccci-lock E -- ccci-lock D` must
/// still see that it holds D (it would wait for itself forever). Variables can also lie.
///
/// This is how a nested `ccci-lock` of the same domain avoids waiting for itself, and how
/// `ccci-deploy` checks it runs under the lock. It only reads: a `flock(LOCK_EX|LOCK_NB)`
/// probe would convert a caller's shared lock (dropping it first) and could take a free
/// lock through a stray descriptor, which proves nothing about who holds the domain.
///
/// An error when our descriptors cannot be read (`EMFILE`): the caller cannot tell, and
/// must neither wait for itself nor act as the holder.
///
/// A lockfile removed by hand is not "ours" any more, even if we hold it: a waiter of
/// `flock(1)` that woke on an inode the janitor unlinked holds such a one too, beside the
/// run holding the fresh lockfile. (Step 6 of [`AppLock::acquire`](super::AppLock::acquire) keeps that case from
/// deadlocking instead: a newcomer waits for us without holding the fresh lockfile.)
pub fn inherited(dir: &LockDir, domain: &Domain) -> io::Result<Option<RawFd>> {
    let locked = proclocks::our_exclusive_flocks()?;
    let Ok(named) = fs::symlink_metadata(dir.lockfile(domain)) else {
        return Ok(None);
    };
    // Compared through `fstat` of the descriptor, in `stat`'s own terms: the device the
    // lock table (and fdinfo) names is not always `st_dev` (btrfs subvolumes).
    Ok(locked.into_iter().find_map(|(fd, _)| {
        let held = fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
        (held.dev() == named.dev() && held.ino() == named.ino()).then_some(fd)
    }))
}

/// The processes that hold `domain` through a lockfile someone removed by hand (outside
/// the protocol, which unlinks only while holding): a fresh lockfile at the path did not
/// make us wait for them, yet they are a run of the domain. Never our own run: a lock that
/// a descriptor of ours holds (our own, or one a parent `ccci-lock` passed down, whose
/// lockfile was removed) is left out, or a nested run would wait for itself forever.
/// An error when the kernel's lock table or a process cannot be read: "cannot tell" must
/// never let a second run in.
pub fn unlinked_holders(dir: &LockDir, domain: &Domain) -> io::Result<Vec<OpenBy>> {
    let table = LockTable::load()?;
    let of_domain = |table: &LockTable| -> io::Result<Vec<OpenBy>> {
        Ok(lockdir::holders_of(&dir.held_unlinked(table)?, domain))
    };
    // Normally there is none; only then is it worth reading our own descriptors.
    if of_domain(&table)?.is_empty() {
        return Ok(Vec::new());
    }
    of_domain(&table.without_our_own()?)
}
