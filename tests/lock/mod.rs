//! ccci-lock end to end (../shared/spec/lock.md, "What the tests must show").

mod contention;
mod race;
mod run;
mod safety;
mod status;

use crate::support::{Background, Gate, Sandbox};

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
