//! Holding the old layer's lockfile of a domain for the command, while a host switches
//! to ccci (`CCCI_LEGACY_LOCK_DIR`, [`crate::lock::legacy`]).

use std::time::{Duration, Instant};

use super::{Session, TOOL};
use crate::diag;
use crate::domain::Domain;
use crate::exit::Exit;
use crate::lock::applock::Wait;
use crate::lock::legacy::{LegacyError, LegacyLocks};

/// While `CCCI_LEGACY_LOCK_DIR` is set, hold the old layer's lockfile of `domain` too,
/// within what is left of `wait` (started at `start`), its descriptor inherited by the
/// command; `Ok` with whether (how long) it waited for a run of the old layer.
/// `Err` with the status to exit with: the conflict code when not acquired, 125 when it
/// cannot be used.
pub(super) fn hold_legacy(
    session: &Session,
    domain: &Domain,
    wait: Wait,
    start: Instant,
    progress: Duration,
) -> Result<Option<Duration>, i32> {
    let legacy = LegacyLocks::from_env().beside(&session.dir);
    let left = match wait {
        Wait::For(d) => Wait::For(d.saturating_sub(start.elapsed())),
        other => other,
    };
    let mut report = legacy.say_events(TOOL, domain, session.quiet);
    match legacy.hold(domain, left, progress, &mut report) {
        Ok(None) => Ok(None),
        Ok(Some(held)) => {
            let waited = held.waited();
            held.into_inherited_fd().map_err(|e| {
                diag!(
                    TOOL,
                    "cannot keep {} for the command: {e}",
                    held_path(domain, &legacy)
                );
                Exit::ToolFailed.code()
            })?;
            Ok(waited)
        }
        Err(e @ LegacyError::Busy { .. }) => {
            diag!(TOOL, "{e}");
            Err(i32::from(session.conflict_exit_code))
        }
        Err(e) => {
            diag!(TOOL, "{e}");
            Err(Exit::ToolFailed.code())
        }
    }
}

fn held_path(domain: &Domain, legacy: &LegacyLocks) -> String {
    legacy
        .lockfile(domain)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}
