//! A lock dir on btrfs, where `stat` gives each subvolume a device of its own while the
//! kernel's lock table names the filesystem's: every question asked of the table must
//! still find the lock (nested locks, ccci-deploy's lock rule, step 6).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::D;
use crate::support::{Background, Sandbox, output_within, require_root, sh_with};

/// A loop-mounted btrfs with a subvolume, unmounted when dropped.
struct Btrfs {
    mnt: PathBuf,
    _sb: Sandbox,
}

impl Btrfs {
    fn new(sb: Sandbox) -> Btrfs {
        let img = sb.path("img");
        let mnt = sb.path("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(Command::new("truncate").args(["-s", "120M"]).arg(&img));
        run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        let fs = Btrfs { mnt, _sb: sb };
        run(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(fs.mnt.join("sub")));
        fs
    }

    fn lock_dir(&self) -> PathBuf {
        self.mnt.join("sub/locks")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

#[test]
fn on_btrfs_nested_locks_the_lock_rule_and_removed_lockfiles_are_seen() {
    if !require_root("on_btrfs_nested_locks_the_lock_rule_and_removed_lockfiles_are_seen") {
        return;
    }
    let btrfs = Btrfs::new(Sandbox::new());
    let locks = btrfs.lock_dir();
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(&locks).unwrap();
    let table_has = |dev: u64| {
        let key = format!(
            "{:02x}:{:02x}:",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev)
        );
        fs::read_to_string("/proc/locks").unwrap().contains(&key)
    };
    // Nested: the inner lock must see the outer one as this run's.
    let script = format!("\"$0\" {D} -- \"$0\" -n {D} -- sh -c 'echo inner-ran'");
    let mut cmd = sh_with("ccci-lock", &script);
    cmd.env("CCCI_APP_LOCK_DIR", &locks);
    let out = output_within(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inner-ran"),
        "{out:?}"
    );
    // The lock rule: past it (78), ccci-deploy stops at docker (69).
    let script = format!("\"$0\" {D} -- \"$DEPLOY\" down {D}; echo \"deploy=$?\"");
    let mut cmd = sh_with("ccci-lock", &script);
    cmd.env("CCCI_APP_LOCK_DIR", &locks)
        .env("DEPLOY", crate::support::bin("ccci-deploy"))
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    let out = output_within(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deploy=69"),
        "{out:?}"
    );
    // The lock rule for a dependency kept for the run (`--for-run`): ccci-deploy, which
    // never ensures the lock dir, must still find the keeper in the lock table.
    let dep = "keyc-0a1b2c.ci.example.org";
    let script = format!(
        "import subprocess, sys\n\
         subprocess.run(['{lock}', '--for-run', '{dep}'], check=True)\n\
         r = subprocess.run(['{deploy}', 'down', '{dep}'])\n\
         print('kept-deploy=%d' % r.returncode)",
        lock = crate::support::bin("ccci-lock").display(),
        deploy = crate::support::bin("ccci-deploy").display(),
    );
    let mut cmd = Sandbox::new().cmd("ccci-lock");
    cmd.env("CCCI_APP_LOCK_DIR", &locks)
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args([D, "--", "python3", "-c", &script]);
    let out = output_within(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept-deploy=69"),
        "{out:?}"
    );
    // Step 6: a run holding a lockfile removed by hand is seen, though its device in the
    // lock table is not the one `stat` gives.
    let sb = Sandbox::new();
    let go = sb.fifo("go");
    let mut holder = sb.cmd("ccci-lock");
    holder
        .env("CCCI_APP_LOCK_DIR", &locks)
        .args([D, "--", "sh", "-c"])
        .arg(format!(
            "echo holding >&2; read x < '{}'",
            go.path.display()
        ));
    let mut holder = Background::spawn(holder);
    holder.wait_for("holding");
    let lockfile = locks.join(format!("cc-ci-app-{D}.lock"));
    let dev = fs::metadata(&lockfile).unwrap().dev();
    assert!(
        !table_has(dev),
        "this btrfs shows the same device to stat and the lock table: the test proves nothing"
    );
    fs::remove_file(&lockfile).unwrap();
    let mut newcomer = sb.cmd("ccci-lock");
    newcomer
        .env("CCCI_APP_LOCK_DIR", &locks)
        .args(["-n", D, "--", "echo", "went-in"]);
    let out = output_within(newcomer);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("removed by hand"),
        "{out:?}"
    );
    go.release();
    assert!(holder.finish().0.success());
}
