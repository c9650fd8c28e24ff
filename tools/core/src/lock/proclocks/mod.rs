//! Who the kernel says holds a flock, and who has a lockfile open.
//!
//! Holder metadata is only what the last holder wrote: after it exits the file keeps it,
//! so a lock taken since by `flock(1)` (which writes nothing) would be reported under a
//! dead pid. The kernel's lock table names the process that placed each lock, and for a
//! `ccci-lock` holder that is the command's pid too (exec keeps the pid).
//!
//! One concern a module, every item re-exported here (callers name `proclocks::…`):
//! `table.rs` parses `/proc/locks` into a [`LockTable`]; `fdinfo.rs` reads the flocks of
//! one open file description (`/proc/<pid>/fdinfo`), ours above all; `open_by.rs` scans
//! `/proc/*/fd` for who has a file open, and names such processes for a line; `device.rs` is how the lock table names a
//! filesystem ([`learn_device`]) and how another process's view names the lock dir;
//! `unlinked.rs` finds the holders of lockfiles removed or moved by hand.

mod device;
mod fdinfo;
mod open_by;
mod table;
mod unlinked;

pub use device::learn_device;
pub use fdinfo::{any_flock_in_fdinfo, exclusive_flock_in_fdinfo, our_exclusive_flocks};
pub use open_by::{OpenBy, describe, processes_with_open};
pub use table::{LockTable, flock_holders};
pub use unlinked::{Scan, Untraced};
