//! Attacks on "held by this run" and `--for-run`: a stranger that looks like a keeper,
//! and two dependencies of one domain asked for at once by one run.

use super::{D, hold_until};
use crate::support::{Background, PATIENCE, Sandbox, bin};

const DEP: &str = "keyc-0a1b2c.ci.example.org";

/// Someone else's process holds DEP's lock and, for its own reasons, a pidfd of the
/// caller's parent (a supervisor watching its children does). It is no keeper of the
/// caller's run — the caller is in no run at all — so ccci-deploy must refuse. (Were it
/// let past the rule, `up` stops at the missing CCCI_DEPLOY_COUNT_FILE, before docker.)
#[test]
fn deploy_refuses_a_holder_that_merely_pins_an_ancestor() {
    let sb = Sandbox::new();
    let script = r#"
import fcntl, os, signal, subprocess, sys
lock_dir, lockfile, deploy, dep = sys.argv[1:5]
os.makedirs(lock_dir, mode=0o700, exist_ok=True)
r, w = os.pipe()
if os.fork() == 0:
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pin = os.pidfd_open(os.getppid())
    os.write(w, b"x")
    signal.pause()
os.close(w)
assert os.read(r, 1) == b"x"
rc = subprocess.run([deploy, "up", dep, "--recipe", "two-services"]).returncode
sys.stderr.write("deploy %d\n" % rc)
"#;
    let mut cmd = sb.cmd("ccci-deploy");
    let mut py = std::process::Command::new("python3");
    py.env_clear().envs(cmd_env(&mut cmd));
    py.args(["-c", &script])
        .arg(sb.lock_dir())
        .arg(sb.lockfile(DEP))
        .arg(bin("ccci-deploy"))
        .arg(DEP);
    let mut run = Background::spawn(py);
    let line = run.wait_for("deploy ");
    assert_eq!(line, "deploy 78", "{:?}", run.seen);
    assert!(
        run.seen
            .iter()
            .any(|l| l.contains(&format!("not holding the app lock for {DEP}"))),
        "{:?}",
        run.seen
    );
}

/// The variables `Sandbox::cmd` gives a tool, for a process that is not one.
fn cmd_env(cmd: &mut std::process::Command) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    cmd.get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect()
}
