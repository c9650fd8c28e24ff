//! Directories every run on the host shares: the lock dir and the runs dir.
//!
//! Anyone who can write such a directory can plant files in it — a symlink where we will
//! write, a lockfile we will trust — so one that is world-writable without the sticky
//! bit, or owned by someone other than root or us, is refused. And there is never a
//! fallback to another directory: every process must agree on where these are, so a tool
//! that cannot use its directory stops with a message naming it and its variable.
//!
//! Both hold lockfiles (app locks; each run's `.run.lock`), so once one is found usable,
//! the kernel's name for its filesystem is learnt ([`crate::lock::proclocks::learn_device`]):
//! the lock table names a device its own way, and telling whose lock is whose needs it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use nix::libc;
use std::path::{Component, Path, PathBuf};

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
    /// Make sure the directory exists (created with mode 0755 whatever the umask; its
    /// parent must exist) and is safe to use.
    pub fn ensure(&self) -> Result<(), SharedDirError> {
        // Nothing is created under a parent someone else could swap.
        self.check_ancestors()?;
        let created = match fs::DirBuilder::new().mode(0o755).create(&self.path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(source) => {
                return Err(SharedDirError::Create {
                    what: self.what,
                    path: self.path.clone(),
                    var: self.var,
                    source,
                });
            }
        };
        self.check(created)?;
        crate::lock::proclocks::learn_device(&self.path);
        Ok(())
    }

    /// Check an existing directory without creating anything; `Ok(false)` when it does
    /// not exist (for read-only users such as `--status` and dry runs).
    pub fn check_existing(&self) -> Result<bool, SharedDirError> {
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            _ => {
                self.check(false)?;
                crate::lock::proclocks::learn_device(&self.path);
                Ok(true)
            }
        }
    }

    /// Inspect (and, when we just created it, chmod) the directory through one
    /// descriptor opened without following a symlink, so what is checked is what is there.
    fn check(&self, created: bool) -> Result<(), SharedDirError> {
        let refuse = |problem: String| SharedDirError::Unsafe {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
            problem,
        };
        let inspect = |source: io::Error| SharedDirError::Inspect {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
            source,
        };
        // The directory itself, as the kernel will resolve it: `link/` and `link/.` name
        // what `link` points to, so a trailing `/` or `/.` would slip a symlink past the
        // checks below (neither `lstat` nor `O_NOFOLLOW` stop at a link followed by `/`).
        let path: PathBuf = self.path.components().collect();
        // A symlink could be repointed under us by whoever owns it. (O_NOFOLLOW below
        // makes sure of it; this is for the clearer message.)
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refuse(
                "is a symbolic link (name the real directory)".into(),
            ));
        }
        self.check_ancestors()?;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => refuse("is not a directory".into()),
                _ => inspect(e),
            })?;
        if created {
            // Exactly 0755: every run's user must be able to reach it.
            dir.set_permissions(fs::Permissions::from_mode(0o755))
                .map_err(inspect)?;
        }
        let meta = dir.metadata().map_err(inspect)?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            let who = if mode & 0o002 != 0 { "world" } else { "group" };
            return Err(refuse(format!(
                "is {who}-writable without the sticky bit (mode {:04o}): others could replace files in it",
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

    /// Every directory and symlink on the way must be beyond others' reach too: whoever
    /// can rename a parent (or repoint a symlink parent) can swap the whole directory.
    fn check_ancestors(&self) -> Result<(), SharedDirError> {
        let refuse = |problem: String| SharedDirError::Unsafe {
            what: self.what,
            path: self.path.clone(),
            var: self.var,
            problem,
        };
        // `..` after a symlink leads wherever the link's owner points it.
        if self.path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("contains '..' (name the directory itself)".into()));
        }
        let path: PathBuf = self.path.components().collect();
        let canonical_parent = path.parent().and_then(|p| fs::canonicalize(p).ok());
        let given = path.ancestors().skip(1);
        let resolved = canonical_parent.iter().flat_map(|c| c.ancestors());
        for ancestor in given.chain(resolved) {
            if let Some(problem) = unsafe_ancestor(ancestor) {
                return Err(refuse(format!(
                    "lies under {}, which {problem}: others could swap it",
                    ancestor.display()
                )));
            }
        }
        Ok(())
    }
}

/// Why an ancestor of a shared directory (not followed if a symlink) would let someone
/// else swap what lies under it: owned by neither root nor us, or writable by others
/// without the sticky bit. `None` when it is safe, or absent (then there is nothing below
/// it to find either).
fn unsafe_ancestor(path: &Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        return None;
    }
    let meta = fs::symlink_metadata(path).ok()?;
    let me = nix::unistd::geteuid().as_raw();
    let kind = if meta.file_type().is_symlink() {
        "is a symbolic link"
    } else {
        "is a directory"
    };
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!("{kind} owned by uid {}", meta.uid()));
    }
    let mode = meta.permissions().mode();
    if !meta.file_type().is_symlink() && mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "is writable by others without the sticky bit (mode {:04o})",
            mode & 0o7777
        ));
    }
    None
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
    fn creates_a_missing_dir_with_mode_0755_but_not_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let err = dir(&tmp.path().join("a/b"))
            .ensure()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot create lock dir") && err.contains("CCCI_APP_LOCK_DIR"),
            "{err}"
        );
        let d = dir(&tmp.path().join("a"));
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
    fn refuses_a_symlink_and_group_writable_without_sticky_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let err = dir(&tmp.path().join("link"))
            .ensure()
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // A trailing `/` or `/.` makes the kernel follow the link: still refused.
        for suffix in ["link/", "link/.", "link//", "link/./"] {
            let err = dir(&tmp.path().join(suffix))
                .ensure()
                .unwrap_err()
                .to_string();
            assert!(err.contains("symbolic link"), "{suffix}: {err}");
            let err = dir(&tmp.path().join(suffix))
                .check_existing()
                .unwrap_err()
                .to_string();
            assert!(err.contains("symbolic link"), "{suffix}: {err}");
        }
        let err = dir(&tmp.path().join("link/../real"))
            .ensure()
            .unwrap_err()
            .to_string();
        assert!(err.contains("'..'"), "{err}");
        dir(&tmp.path().join("real/")).ensure().unwrap();
        // A parent others could rename is as bad as the directory itself.
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::create_dir(open.join("locks")).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = dir(&open.join("locks")).ensure().unwrap_err().to_string();
        assert!(err.contains("writable by others"), "{err}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        dir(&open.join("locks")).ensure().unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o775)).unwrap();
        let err = dir(&real).ensure().unwrap_err().to_string();
        assert!(err.contains("group-writable"), "{err}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o1775)).unwrap();
        dir(&real).ensure().unwrap();
    }

    #[test]
    fn missing_dir_is_not_created_by_a_check() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(&tmp.path().join("absent"));
        assert!(!d.check_existing().unwrap());
        assert!(!d.path().exists());
    }
}
