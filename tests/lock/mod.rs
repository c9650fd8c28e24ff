//! ccci-lock end to end (../shared/spec/lock.md, "What the tests must show").

mod adversary;
mod btrfs;
mod contention;
mod for_run;
mod for_run_attacks;
mod owner;
mod race;
mod run;
mod safety;
mod status;

use std::time::{Duration, Instant};

use crate::support::{Background, Gate, PATIENCE, Sandbox};

pub const D: &str = "immi-ad3e33.ci.example.org";

/// Start `ccci-lock D -- sh -c script` in the background and wait until it holds D.
pub fn hold(sb: &Sandbox, domain: &str, extra: &[&str], script: &str) -> Background {
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args(extra)
        .arg(domain)
        .arg("--")
        .args(["sh", "-c", script]);
    cmd.current_dir(sb.tmp.path());
    let mut bg = Background::spawn(cmd);
    bg.wait_for(&format!("== app lock: acquired {domain}"));
    // ccci-lock prints that line before it execs the command: tests that name the holder
    // by its process name (`(sh)`) must wait until the exec happened, or a busy machine
    // shows them `(ccci-lock)`.
    let comm = format!("/proc/{}/comm", bg.pid());
    let end = Instant::now() + PATIENCE;
    while std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() != "sh") {
        assert!(Instant::now() < end, "the holder never exec'd its sh");
        std::thread::sleep(Duration::from_millis(2));
    }
    bg
}

/// A holder that keeps D until `gate` is released.
pub fn hold_until(sb: &Sandbox, domain: &str, gate: &Gate) -> Background {
    hold(
        sb,
        domain,
        &[],
        &format!("read x < '{}'", gate.path.display()),
    )
}

/// `setpriv` arguments for uid/gid 65534 with no groups: "another local user".
pub const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// `sh -c script` as [`NOBODY`].
pub fn as_nobody(script: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(NOBODY).args(["sh", "-c", script]);
    cmd
}

/// A sandbox another user can reach (tempdirs are 0700).
pub fn reachable_sandbox() -> Sandbox {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    sb
}

/// A lockfile as an older build left it: ours, 0644, openable by anyone.
pub fn old_lockfile(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}
