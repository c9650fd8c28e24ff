//! A test's processes, found in `/proc` by a tag in their environment.
//!
//! Every process a test starts carries `<VAR>=<the test's sandbox>`, and the environment is
//! inherited by everything they start, setsid'd daemons included: so `/proc/*/environ`
//! names exactly the test's processes, which is how a test proves none survived and how a
//! failing test kills whatever did.

use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The mark a test's processes carry.
pub struct Tag {
    var: &'static str,
    value: String,
}

impl Tag {
    pub fn new(var: &'static str, value: String) -> Tag {
        Tag { var, value }
    }

    /// Give `cmd`, and so everything it starts, the tag.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env(self.var, &self.value);
    }

    /// The tagged processes alive now (zombies count as gone): `(pid, comm)`.
    pub fn alive(&self) -> Vec<(i32, String)> {
        let needle = format!("{}={}\0", self.var, self.value);
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if !env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                continue;
            }
            if let Some((comm, state)) = comm_and_state(pid)
                && state != 'Z'
            {
                found.push((pid, comm));
            }
        }
        found
    }

    /// Wait (bounded) until no tagged process is alive.
    pub fn wait_until_none_alive(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let alive = self.alive();
            if alive.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "still alive after {limit:?}: {alive:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL every tagged process: a failed test's leftovers.
    pub fn kill_all(&self) {
        for (pid, _) in self.alive() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `comm` and state letter from `/proc/<pid>/stat`.
pub fn comm_and_state(pid: i32) -> Option<(String, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let state = stat[close + 1..].trim_start().chars().next()?;
    Some((stat[open + 1..close].to_owned(), state))
}

/// The parent pid from `/proc/<pid>/stat`.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
