//! The directory of app lockfiles, shared by every process on the host.
//!
//! Everyone must agree on it: two tools looking in different directories would not
//! exclude each other, and the janitor would reap a live run. So there is no fallback —
//! see [`SharedDir`] for the rules a usable lock dir must meet.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::domain::Domain;
use crate::env::EnvVars;
use crate::files::shareddir::SharedDir;
use crate::lock::proclocks::{LockTable, OpenBy, Untraced};

const PREFIX: &str = "cc-ci-app-";

/// Domains held through a lockfile removed from the lock dir, each with a holder.
pub type HeldUnlinked = Vec<(Domain, OpenBy)>;
const SUFFIX: &str = ".lock";

#[derive(Clone, Debug)]
pub struct LockDir {
    dir: SharedDir,
}

/// `path()`, `ensure()` (exists, mode 0755, safe to put lockfiles in) and
/// `check_existing()` are the shared dir's own.
impl std::ops::Deref for LockDir {
    type Target = SharedDir;

    fn deref(&self) -> &SharedDir {
        &self.dir
    }
}

impl LockDir {
    pub fn new(path: impl Into<PathBuf>) -> LockDir {
        LockDir {
            dir: SharedDir {
                path: path.into(),
                what: "lock dir",
                var: EnvVars::CCCI_APP_LOCK_DIR,
            },
        }
    }

    /// The lock dir at `path` (from `--lock-dir`, or clap's `env =` and default), made
    /// absolute, since `CCCI_LOCK_FILE` must stay right after the command changes
    /// directory.
    pub fn at(path: PathBuf) -> LockDir {
        LockDir::new(std::path::absolute(&path).unwrap_or(path))
    }

    /// As [`at`](Self::at), for a tool without `--lock-dir` (ccci-deploy):
    /// `CCCI_APP_LOCK_DIR` (empty counts as unset), else the default — the one place the
    /// variable is read by hand.
    pub fn from_env() -> LockDir {
        LockDir::at(
            crate::env::non_empty(EnvVars::CCCI_APP_LOCK_DIR)
                .map_or_else(|| crate::env::defaults::APP_LOCK_DIR.into(), PathBuf::from),
        )
    }

    /// The lockfile of `domain`: `<dir>/cc-ci-app-<domain>.lock`.
    pub fn lockfile(&self, domain: &Domain) -> PathBuf {
        self.path().join(lockfile_name(domain))
    }

    /// The domains that have a lockfile here, sorted. Names that are not
    /// `cc-ci-app-<valid domain>.lock` are not ours and are passed over.
    pub fn domains(&self) -> io::Result<Vec<Domain>> {
        let mut domains = Vec::new();
        for entry in fs::read_dir(self.path())? {
            if let Some(domain) = domain_of(&entry?.file_name()) {
                domains.push(domain);
            }
        }
        domains.sort();
        Ok(domains)
    }

    /// Domains whose lockfile here was unlinked while a process held it, with who holds
    /// it. Outside the protocol (an operator's `rm`): the holder is a live run, though no
    /// lockfile says so any more.
    /// As [`held_unlinked`](Self::held_unlinked), with the flocks on this directory's
    /// device that nothing in sight explains (see [`LockTable::held_unlinked_or_untraced`]).
    pub fn held_unlinked_or_untraced(
        &self,
        locks: &LockTable,
    ) -> io::Result<(HeldUnlinked, Vec<Untraced>)> {
        let scan = locks.held_unlinked_or_untraced(self.path(), &is_lockfile_name)?;
        let held = scan
            .unlinked
            .into_iter()
            .filter_map(|(name, holder)| Some((domain_of(&name)?, holder)))
            .collect();
        Ok((held, scan.untraced))
    }

    /// An error when that cannot be told (see [`LockTable::held_unlinked`]).
    pub fn held_unlinked(&self, locks: &LockTable) -> io::Result<HeldUnlinked> {
        Ok(locks
            .held_unlinked(self.path(), &is_lockfile_name)?
            .into_iter()
            .filter_map(|(name, holder)| Some((domain_of(&name)?, holder)))
            .collect())
    }
}

/// Who, in `held` (from [`LockDir::held_unlinked`]), holds `domain` through a removed
/// lockfile.
pub fn holders_of(held: &[(Domain, OpenBy)], domain: &Domain) -> Vec<OpenBy> {
    held.iter()
        .filter(|(d, _)| d == domain)
        .map(|(_, holder)| holder.clone())
        .collect()
}

/// The name of `domain`'s lockfile, `cc-ci-app-<domain>.lock`: the one place it is spelled.
pub fn lockfile_name(domain: &Domain) -> std::ffi::OsString {
    format!("{PREFIX}{domain}{SUFFIX}").into()
}

/// Whether `name` is a lockfile's: `cc-ci-app-<valid domain>.lock`.
fn is_lockfile_name(name: &std::ffi::OsStr) -> bool {
    domain_of(name).is_some()
}

/// The domain a lockfile's name is for: `cc-ci-app-<valid domain>.lock`.
pub(crate) fn domain_of(name: &std::ffi::OsStr) -> Option<Domain> {
    let domain = name.to_str()?.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    Domain::parse(domain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_our_lockfiles() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "cc-ci-app-b.c.lock",
            "cc-ci-app-a.lock",
            "cc-ci-app-BAD.lock",
            "other.lock",
            "cc-ci-app-x.lock.tmp",
        ] {
            fs::write(tmp.path().join(name), "").unwrap();
        }
        let dir = LockDir::new(tmp.path());
        let names: Vec<_> = dir
            .domains()
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(names, ["a", "b.c"]);
        let d = Domain::parse("a.b").unwrap();
        assert_eq!(dir.lockfile(&d), tmp.path().join("cc-ci-app-a.b.lock"));
    }

    #[test]
    fn errors_name_the_lock_dir_variable() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let err = LockDir::new(tmp.path()).ensure().unwrap_err().to_string();
        assert!(
            err.starts_with("lock dir ") && err.contains("CCCI_APP_LOCK_DIR"),
            "{err}"
        );
    }
}
