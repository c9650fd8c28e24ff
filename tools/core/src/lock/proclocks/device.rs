//! How the kernel names a filesystem and the lock dir: the device `/proc/locks` gives a
//! file is not always its `st_dev` ([`learn_device`]), and another process may see the
//! lock dir under another path ([`DirId`]).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fdinfo::any_flock_in_fdinfo;

/// `/proc/locks` names a device as `major:minor` in hex — the filesystem's own device,
/// which is not always the `st_dev` that `stat` gives: btrfs gives each subvolume a
/// device of its own. So a device [`learn_device`] found to differ is translated.
pub(super) fn dev_key(dev: u64) -> String {
    let dev = DEVICES
        .lock()
        .ok()
        .and_then(|known| known.as_ref()?.get(&dev).copied())
        .unwrap_or(dev);
    table_key(dev)
}

/// A device as the lock table writes it.
pub(super) fn table_key(dev: u64) -> String {
    format!(
        "{:02x}:{:02x}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    )
}

/// `stat`'s device → the lock table's, where they differ (see [`learn_device`]).
static DEVICES: std::sync::Mutex<Option<HashMap<u64, u64>>> = std::sync::Mutex::new(None);

/// Learn how the kernel's lock table names the filesystem `dir` is on: take a shared
/// flock on the directory itself for an instant and read, in our own fdinfo, the device
/// the kernel gives it. Call it for the lock dir and the runs dir before asking the table
/// about files in them. Nothing is learnt (nothing to translate) when it cannot be told.
pub fn learn_device(dir: &Path) {
    let Ok(file) = fs::File::open(dir) else {
        return;
    };
    let (Ok(meta), Ok(())) = (file.metadata(), file.try_lock_shared()) else {
        return;
    };
    use std::os::fd::AsRawFd;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd()));
    let Some((table_dev, _)) = info.ok().and_then(|i| any_flock_in_fdinfo(&i)) else {
        return;
    };
    if table_dev != meta.dev()
        && let Ok(mut known) = DEVICES.lock()
    {
        known
            .get_or_insert_with(HashMap::new)
            .insert(meta.dev(), table_dev);
    }
}

/// A lock dir, by identity and by the path the kernel would show for it.
pub(super) struct DirId {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) canonical: Option<PathBuf>,
}

impl DirId {
    /// Whether `parent`, as `pid`'s `/proc/<pid>/fd` link shows it, is this directory:
    /// by path, or by identity — in `pid`'s own view (another mount namespace, where the
    /// lock dir is bind-mounted elsewhere), or in ours (a bind mount here).
    pub(super) fn is(&self, pid: i32, parent: &Path) -> bool {
        let same =
            |p: &Path| fs::metadata(p).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        self.canonical.as_deref() == Some(parent)
            || parent
                .strip_prefix("/")
                .is_ok_and(|rel| same(&Path::new(&format!("/proc/{pid}/root")).join(rel)))
            || same(parent)
    }
}
