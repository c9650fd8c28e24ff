//! ccci-guard end to end (../shared/spec/guard.md, "What the tests must show").
//!
//! Every process a test starts carries `CCCI_GUARD_TEST_TAG=<the test's sandbox>` in its
//! environment ([`crate::procs::Tag`]): that is how a test proves none survived, and how a
//! failing test kills whatever did (the guard puts the command in a session of its own,
//! out of reach of the process group `Background` kills on drop).

mod hostile;
#[cfg(target_env = "gnu")] // PTRACE_GET_SYSCALL_INFO
mod orphaned;
mod signals;
mod status;
mod teardown;
mod threads;
#[cfg(target_env = "gnu")] // PTRACE_GET_SYSCALL_INFO, through orphaned's helpers
mod wedged;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::procs::Tag;
pub use crate::procs::{comm_and_state, ppid};
use crate::support::{PATIENCE, Sandbox, bin, scrub};

const TAG: &str = "CCCI_GUARD_TEST_TAG";

/// A test's sandbox plus the tag its processes carry.
pub struct Run {
    pub sb: Sandbox,
    tag: Tag,
}

impl Run {
    pub fn new() -> Run {
        let sb = Sandbox::new();
        let tag = Tag::new(TAG, sb.tmp.path().display().to_string());
        Run { sb, tag }
    }

    /// `ccci-guard ARGS...`, tagged, in the sandbox.
    pub fn guard(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("ccci-guard"));
        self.prepare(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// `sh -c SCRIPT` with `$0` = ccci-guard, tagged, in the sandbox.
    pub fn sh(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        self.prepare(&mut cmd);
        cmd.arg("-c").arg(script).arg(bin("ccci-guard"));
        cmd
    }

    /// Scrubbed of `CCCI_*`/`DRONE_*`, tagged, run in the sandbox.
    pub fn prepare(&self, cmd: &mut Command) {
        scrub(cmd);
        self.tag.apply(cmd);
        cmd.current_dir(self.sb.tmp.path());
    }

    pub fn path(&self, name: &str) -> String {
        self.sb.path(name).display().to_string()
    }

    /// The test's processes alive now (zombies count as gone): `(pid, comm)`.
    pub fn alive(&self) -> Vec<(i32, String)> {
        self.tag.alive()
    }

    /// Nothing of this test is alive: checked at once, because the guard has already
    /// reaped everything by the time it exits.
    pub fn assert_nothing_alive(&self) {
        let alive = self.alive();
        assert!(alive.is_empty(), "processes outlived the guard: {alive:?}");
    }

    /// Wait (bounded) until nothing of this test is alive: for cases where the guard
    /// itself was killed and nobody waits for the command.
    pub fn wait_until_nothing_alive(&self) {
        self.tag.wait_until_none_alive(PATIENCE);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.tag.kill_all();
    }
}

/// Fill a pipe to the last byte, as another writer sharing it would, and leave it
/// blocking again: O_NONBLOCK belongs to the open file description, which whoever gets
/// the pipe as stderr shares.
pub fn fill(pipe: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    while nix::unistd::write(pipe, &[b'x'; 4096]).is_ok() {}
    while nix::unistd::write(pipe, b"x").is_ok() {}
    fcntl(pipe, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
}

/// Wait (bounded) for `child` to exit; on a hang, kill it and fail with `hung`.
pub fn exit_within(child: &mut std::process::Child, hung: &str) -> std::process::ExitStatus {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{hung}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Wait (bounded) until `path` holds a line containing `needle`; returns the content.
pub fn wait_for_mark(path: &Path, needle: &str) -> String {
    let end = Instant::now() + PATIENCE;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < end,
            "no {needle:?} in {} within {PATIENCE:?}; it holds {text:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The number after `word` in `line` (`ready 4242` → 4242).
pub fn number_after(line: &str, word: &str) -> i32 {
    line.split_whitespace()
        .skip_while(|w| *w != word)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}
