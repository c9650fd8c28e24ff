//! ccci-lock end to end (../shared/spec/lock.md, "What the tests must show").

mod adversary;
mod btrfs;
mod contention;
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
