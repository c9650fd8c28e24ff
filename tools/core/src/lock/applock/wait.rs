//! Waiting for a held lock: how long ([`Wait`]), what is reported meanwhile
//! ([`WaitEvent`]), and the blocking wait itself, on a helper thread.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::holder_of;
use crate::lock::holder::Holder;
use crate::lock::proclocks::OpenBy;

/// How long to wait for a held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    No,
    For(Duration),
    Forever,
}

impl Wait {
    /// How a "not acquired" line ends, after `waited`: `gave up after 30s` for a bounded
    /// wait, `not waiting` for `-n`.
    pub fn how_it_ended(self, waited: Duration) -> String {
        match self {
            Wait::For(_) => format!("gave up after {}", crate::duration::format_secs(waited)),
            _ => "not waiting".to_owned(),
        }
    }
}

/// What happens while waiting, for the caller to report.
#[derive(Debug)]
pub enum WaitEvent<'a> {
    /// The lock is held by someone else and we are about to block.
    Blocked { holder: Option<&'a Holder> },
    /// Still blocked, `waited` after we started.
    StillWaiting {
        waited: Duration,
        holder: Option<&'a Holder>,
    },
    /// We got the lock on an inode that no longer has the lockfile's name (a janitor
    /// unlinked it while we waited): dropped, and starting over on the path.
    Replaced { path: &'a Path, inode: u64 },
    /// The lockfile could be opened by other users (an older build made it 0644): it was
    /// retired, and a fresh 0600 one put in its place, which we hold (lockowner.rs).
    Retired { path: &'a Path },
    /// Our holder metadata could not be written (the lock is held all the same).
    HolderNotWritten {
        path: &'a Path,
        error: &'a io::Error,
    },
    /// We hold the fresh lockfile, but a run holds the domain through one that was removed
    /// by hand (step 6): waiting for it to end.
    HeldUnlinked { holders: &'a [OpenBy] },
    /// Still waiting for that run, `waited` after we started.
    StillHeldUnlinked {
        waited: Duration,
        holders: &'a [OpenBy],
    },
}

/// Say on stderr that a lockfile was retired (the one event a tool that reports nothing
/// else while locking must still say): `<tool>: warning: ...`.
pub fn warn_retired(tool: &str) -> impl FnMut(WaitEvent<'_>) + '_ {
    move |event| {
        if let WaitEvent::Retired { path } = event {
            crate::diag!(
                tool,
                "warning: {} could be opened by other users (made 0644 by an older build): retired, and a fresh 0600 lockfile put in its place",
                path.display()
            );
        }
    }
}

/// Block in `flock(LOCK_EX)` on a helper thread, so the wake-up follows the holder's
/// release at once while this thread reports progress and watches the deadline.
/// `Err` with the (still shared) file when the deadline passed first.
pub(super) fn block(
    file: File,
    start: Instant,
    deadline: Option<Instant>,
    progress: Duration,
    on_event: &mut dyn FnMut(WaitEvent<'_>),
) -> io::Result<Result<File, Arc<File>>> {
    let file = Arc::new(file);
    let (tx, rx) = mpsc::channel();
    let locker = {
        let file = Arc::clone(&file);
        thread::spawn(move || {
            let result = loop {
                match file.lock() {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            drop(file);
            let _ = tx.send(result);
        })
    };
    let progress = progress.max(Duration::from_millis(10));
    // From now, not from `start`: after a reopen, reports already due must not burst out.
    let mut next_report = Instant::now() + progress.min(Duration::from_secs(86_400 * 365));
    loop {
        let wake = deadline.map_or(next_report, |d| d.min(next_report));
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(result) => {
                result?;
                let _ = locker.join();
                let file = Arc::into_inner(file).expect("the locker thread dropped its handle");
                return Ok(Ok(file));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(Err(file));
                }
                if now >= next_report {
                    let holder = holder_of(&file);
                    on_event(WaitEvent::StillWaiting {
                        waited: now - start,
                        holder: holder.as_ref(),
                    });
                    next_report = now + progress.min(Duration::from_secs(86_400 * 365));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the thread waiting for the lock died"));
            }
        }
    }
}
