//! The app lock protocol: one run per app domain, shared by ccci-lock, ccci-deploy and
//! ccci-janitor (`docs/lock.md`).
//!
//! * The lock is `flock(2)` `LOCK_EX` on `<lock dir>/cc-ci-app-<domain>.lock`, through
//!   std's `File::lock`/`File::try_lock`, so it interoperates with `flock(1)`. The kernel
//!   releases it when the last descriptor of the open file description closes — i.e. when
//!   the command and every descendant that inherited it have exited. Nothing here ever
//!   calls `LOCK_UN` on a descriptor another process may share.
//! * The file is opened `O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC`, never truncated on open,
//!   and must be a regular file with one link, owned by us: a planted symlink or hard
//!   link must never be written through.
//! * Identity: a flock protects an inode, not a name. A janitor may unlink the name of a
//!   free lockfile (holding the lock while it does) while a waiter is blocked on that
//!   inode; when the waiter then gets the lock, it holds a dead file while a newcomer
//!   holds a fresh one under the same name. So after every acquisition `(st_dev, st_ino)`
//!   of the descriptor are compared with those of the path, and on a mismatch the lock is
//!   dropped and the whole thing starts over.
//!
//! One concern a module, every item re-exported here (callers name `applock::…`):
//! `protocol.rs` is [`AppLock`] and the whole protocol a run takes it by (steps 2–6);
//! `verified.rs` is steps 2–4 on any lockfile path (open, lock, verify, reopen);
//! `wait.rs` is how long to wait, what is reported meanwhile, and the blocking wait on a
//! helper thread; `open.rs` opens a lockfile by the rules and checks its identity;
//! `probe.rs` looks at a lock without taking it, and names its holder; `held.rs` is who
//! holds a domain beyond the lockfile: this process already, or a run through a lockfile
//! removed by hand.

use std::io;
use std::path::PathBuf;

use crate::domain::Domain;

mod held;
mod open;
mod probe;
mod protocol;
mod verified;
mod wait;

pub use held::{inherited, unlinked_holders};
pub(crate) use open::{OPEN_FLAGS, checked};
pub use open::{open_existing, open_lockfile, same_file};
pub use probe::{Probe, holder_in, holder_of, probe};
pub use protocol::{Acquisition, AppLock};
pub use verified::{Verified, acquire_existing, acquire_shared_verified, acquire_verified};
pub use wait::{Wait, WaitEvent, warn_retired};

/// How many times a lockfile may be found replaced under us before we give up: each
/// replacement needs a janitor pass, so a hundred in a row means something is wrong.
pub const MAX_REOPENS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lockfile {} is a symbolic link — refusing to open it (a planted link must never be written through)", path.display())]
    Symlink { path: PathBuf },
    #[error("lockfile {} {problem} — refusing it", path.display())]
    Unsafe { path: PathBuf, problem: String },
    #[error("cannot open lockfile {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Flock { path: PathBuf, source: io::Error },
    #[error("lockfile {} was replaced under us {MAX_REOPENS} times in a row — giving up", path.display())]
    Unstable { path: PathBuf },
    #[error(
        "cannot tell whether a run holds {domain} through a lockfile removed by hand — not going in: {source}"
    )]
    CannotTell { domain: Domain, source: io::Error },
}
