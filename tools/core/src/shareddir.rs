//! Directories every run on the host shares: the lock dir and the runs dir.
//!
//! Anyone who can write such a directory can plant files in it — a symlink where we will
//! write, a lockfile we will trust — so one that is world-writable without the sticky
//! bit, or owned by someone other than root or us, is refused. And there is never a
//! fallback to another directory: every process must agree on where these are, so a tool
//! that cannot use its directory stops with a message naming it and its variable.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A shared directory and how the user names it.
#[derive(Clone, Debug)]
pub struct SharedDir {
    pub path: PathBuf,
    /// "lock dir", "runs dir": for messages.
    pub what: &'static str,
    /// The environment variable that sets it.
    pub var: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum SharedDirError {
    #[error("cannot create {what} {}: {source} — create it, or set {var} to a usable directory", path.display())]
    Create {
        what: &'static str,
        path: PathBuf,
        var: &'static str,
        source: io::Error,
    },
    #[error("cannot use {what} {}: {source} (set {var} to a usable directory)", path.display())]
    Inspect {
        what: &'static str,
        path: PathBuf,
        var: &'static str,
        source: io::Error,
    },
    #[error("{what} {} {problem} — refusing it (set {var}, or fix the directory)", path.display())]
    Unsafe {
        what: &'static str,
        path: PathBuf,
        var: &'static str,
        problem: String,
    },
}

impl SharedDir {
    /// Make sure the directory exists (created 0755 whatever the umask, with its parents)
    /// and is safe to use.
    pub fn ensure(&self) -> Result<(), SharedDirError> {
        let create = |source| SharedDirError::Create {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
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
            // Exactly 0755: every run's user must be able to reach it.
            Ok(()) => fs::set_permissions(&self.path, fs::Permissions::from_mode(0o755))
                .map_err(create)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create(e)),
        }
        self.check()
    }

    /// Check an existing directory without creating anything; `Ok(false)` when it does
    /// not exist (for read-only users such as `--status` and dry runs).
    pub fn check_existing(&self) -> Result<bool, SharedDirError> {
        match fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            _ => self.check().map(|()| true),
        }
    }

    fn check(&self) -> Result<(), SharedDirError> {
        let meta = fs::metadata(&self.path).map_err(|source| SharedDirError::Inspect {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
            source,
        })?;
        let refuse = |problem: String| SharedDirError::Unsafe {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
            problem,
        };
        if !meta.is_dir() {
            return Err(refuse("is not a directory".into()));
        }
        let mode = meta.permissions().mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(refuse(format!(
                "is world-writable without the sticky bit (mode {:04o}): anyone could replace files in it",
                mode & 0o7777
            )));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(refuse(format!(
                "is owned by uid {}, neither root nor us (uid {me})",
                meta.uid()
            )));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &Path) -> SharedDir {
        SharedDir {
            path: path.to_owned(),
            what: "lock dir",
            var: "CCCI_APP_LOCK_DIR",
        }
    }

    #[test]
    fn creates_a_missing_dir_with_mode_0755() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(&tmp.path().join("a/b"));
        d.ensure().unwrap();
        let mode = fs::metadata(d.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        assert!(d.check_existing().unwrap());
    }

    #[test]
    fn refuses_world_writable_without_sticky_bit() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = dir(tmp.path()).ensure().unwrap_err().to_string();
        assert!(
            err.contains("world-writable") && err.contains("CCCI_APP_LOCK_DIR"),
            "{err}"
        );
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        dir(tmp.path()).ensure().unwrap();
    }

    #[test]
    fn refuses_a_file_and_names_the_directory_and_variable() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let err = dir(tmp.path()).ensure().unwrap_err().to_string();
        assert!(
            err.contains("lock dir") && err.contains("CCCI_APP_LOCK_DIR"),
            "{err}"
        );
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    }

    #[test]
    fn missing_dir_is_not_created_by_a_check() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(&tmp.path().join("absent"));
        assert!(!d.check_existing().unwrap());
        assert!(!d.path().exists());
    }
}
