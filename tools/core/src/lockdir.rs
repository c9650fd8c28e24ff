//! The directory of app lockfiles, shared by every process on the host.
//!
//! Everyone must agree on it: two tools looking in different directories would not
//! exclude each other, and the janitor would reap a live run. So there is no fallback
//! to another directory — a lock dir that cannot be created or used stops the tool with
//! a message naming it and `CCCI_APP_LOCK_DIR`. And because anyone who can write the
//! directory can plant lockfiles (a symlink to a file we would then write through), a
//! world-writable directory without the sticky bit, or one owned by someone other than
//! root or us, is refused.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::domain::Domain;
use crate::env::EnvVars;

const PREFIX: &str = "cc-ci-app-";
const SUFFIX: &str = ".lock";

#[derive(Clone, Debug)]
pub struct LockDir {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockDirError {
    #[error("cannot create lock dir {path}: {source} — create it, or set {var} to a usable directory", var = EnvVars::CCCI_APP_LOCK_DIR)]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot use lock dir {path}: {source} (set {var} to a usable directory)", var = EnvVars::CCCI_APP_LOCK_DIR)]
    Inspect { path: PathBuf, source: io::Error },
    #[error("lock dir {path} {problem} — refusing it (set {var}, or fix the directory)", var = EnvVars::CCCI_APP_LOCK_DIR)]
    Unsafe { path: PathBuf, problem: String },
}

impl LockDir {
    pub fn new(path: impl Into<PathBuf>) -> LockDir {
        LockDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make sure the directory exists (mode 0755) and is safe to put lockfiles in.
    pub fn ensure(&self) -> Result<(), LockDirError> {
        let create = |source| LockDirError::Create {
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(create)?;
        }
        match DirBuilder::new().mode(0o755).create(&self.path) {
            // Exactly 0755 whatever the umask: every run's user must be able to reach it.
            Ok(()) => fs::set_permissions(&self.path, fs::Permissions::from_mode(0o755))
                .map_err(create)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create(e)),
        }
        self.check()
    }

    /// Check an existing directory without creating anything; `Ok(false)` when it does
    /// not exist (for read-only users such as `--status` and `--dry-run`).
    pub fn check_existing(&self) -> Result<bool, LockDirError> {
        match fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            _ => self.check().map(|()| true),
        }
    }

    fn check(&self) -> Result<(), LockDirError> {
        let meta = fs::metadata(&self.path).map_err(|source| LockDirError::Inspect {
            path: self.path.clone(),
            source,
        })?;
        let unsafe_dir = |problem: String| LockDirError::Unsafe {
            path: self.path.clone(),
            problem,
        };
        if !meta.is_dir() {
            return Err(unsafe_dir("is not a directory".into()));
        }
        let mode = meta.permissions().mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_dir(format!(
                "is world-writable without the sticky bit (mode {:04o}): anyone could replace lockfiles in it",
                mode & 0o7777
            )));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(unsafe_dir(format!(
                "is owned by uid {}, neither root nor us (uid {me})",
                meta.uid()
            )));
        }
        Ok(())
    }

    /// The lockfile of `domain`: `<dir>/cc-ci-app-<domain>.lock`.
    pub fn lockfile(&self, domain: &Domain) -> PathBuf {
        self.path.join(format!("{PREFIX}{domain}{SUFFIX}"))
    }

    /// The domains that have a lockfile here, sorted. Names that are not
    /// `cc-ci-app-<valid domain>.lock` are not ours and are passed over.
    pub fn domains(&self) -> io::Result<Vec<Domain>> {
        let mut domains = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(domain) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(SUFFIX))
            else {
                continue;
            };
            if let Ok(domain) = Domain::parse(domain) {
                domains.push(domain);
            }
        }
        domains.sort();
        Ok(domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_missing_dir_with_mode_0755() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::new(tmp.path().join("a/b"));
        dir.ensure().unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        assert!(dir.check_existing().unwrap());
    }

    #[test]
    fn refuses_world_writable_without_sticky_bit() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = LockDir::new(tmp.path()).ensure().unwrap_err().to_string();
        assert!(
            err.contains("world-writable") && err.contains("CCCI_APP_LOCK_DIR"),
            "{err}"
        );
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        LockDir::new(tmp.path()).ensure().unwrap();
    }

    #[test]
    fn refuses_a_file_and_names_the_variable() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let err = LockDir::new(tmp.path()).ensure().unwrap_err().to_string();
        assert!(err.contains("CCCI_APP_LOCK_DIR"), "{err}");
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    }

    #[test]
    fn missing_dir_is_not_created_by_a_check() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::new(tmp.path().join("absent"));
        assert!(!dir.check_existing().unwrap());
        assert!(!dir.path().exists());
    }

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
}
