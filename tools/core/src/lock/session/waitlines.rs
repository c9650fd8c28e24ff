//! What `ccci-lock` says while it waits for a lock: the `==` lines (none with `-q`) and
//! the warnings that are said even then.

use std::time::Duration;

use super::TOOL;
use crate::domain::Domain;
use crate::lock::applock::WaitEvent;
use crate::lock::holder::describe;
use crate::lock::proclocks;
use crate::{diag, duration, say};

/// Say the events of a wait for `domain`. A wait inside a run (`rechecking`) gets events
/// more often than every `progress` (see `recheck.rs`): its repeated waiting lines are
/// still said only every `progress`.
pub(super) fn say_waits(
    domain: &Domain,
    quiet: bool,
    rechecking: bool,
    progress: Duration,
) -> impl FnMut(WaitEvent<'_>) + '_ {
    let mut next_line = progress;
    move |event| match event {
        WaitEvent::StillWaiting { waited, .. } | WaitEvent::StillHeldUnlinked { waited, .. }
            if rechecking && waited < next_line => {}
        // An older build's lockfile, lockable by anyone: said even with -q.
        WaitEvent::Retired { path } => diag!(
            TOOL,
            "warning: {} could be opened by other users (made 0644 by an older build): retired, and a fresh 0600 lockfile holds {domain} — whatever held the old one (another user, a run of an older build) is not waited for",
            path.display()
        ),
        WaitEvent::HolderNotWritten { path, error } => diag!(
            TOOL,
            "warning: could not write holder metadata to {}: {error} (the lock is held all the same)",
            path.display()
        ),
        _ if quiet => {}
        WaitEvent::Blocked { holder } => say!(
            "== app lock: another run of {domain} in flight ({}) — waiting ==",
            describe(holder, true)
        ),
        WaitEvent::StillWaiting { waited, holder } => {
            next_line = waited + progress;
            say!(
                "== app lock: still waiting for {domain} after {} ({}) ==",
                duration::format(waited),
                describe(holder, false)
            )
        }
        WaitEvent::Replaced { path, inode } => diag!(
            TOOL,
            "{} was unlinked while we waited on it (inode {inode}) — reopening",
            path.display()
        ),
        WaitEvent::HeldUnlinked { holders } => say!(
            "== app lock: {domain} is also held by {} through a lockfile that was removed by hand — waiting for it to end ==",
            proclocks::describe(holders)
        ),
        WaitEvent::StillHeldUnlinked { waited, holders } => {
            next_line = waited + progress;
            say!(
                "== app lock: still waiting for {domain} after {} (held by {} through a removed lockfile) ==",
                duration::format(waited),
                proclocks::describe(holders)
            )
        }
    }
}
