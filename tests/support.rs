//! What the end-to-end tests share: a sandbox of directories handed to the tools through
//! their `CCCI_*` variables, commands with every inherited `CCCI_*`/`DRONE_*` variable
//! scrubbed, and background processes whose stderr lines the tests wait for — orderings
//! are proved with marks the processes write, never with sleeps.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Loose bound for anything a test waits on: long enough for a loaded 2-core machine,
/// short enough that a hang fails with a message instead of stalling CI.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn bin(tool: &str) -> PathBuf {
    match tool {
        "ccci-lock" => env!("CARGO_BIN_EXE_ccci-lock").into(),
        "ccci-guard" => env!("CARGO_BIN_EXE_ccci-guard").into(),
        "ccci-rundir" => env!("CARGO_BIN_EXE_ccci-rundir").into(),
        "ccci-deploy" => env!("CARGO_BIN_EXE_ccci-deploy").into(),
        "ccci-janitor" => env!("CARGO_BIN_EXE_ccci-janitor").into(),
        other => panic!("unknown tool {other}"),
    }
}

/// A private lock dir (and scratch space) for one test.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn lock_dir(&self) -> PathBuf {
        self.path("locks")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.path("runs")
    }

    /// The canonical abra tree (`servers/` is created on first use by `abra_servers`).
    pub fn abra_dir(&self) -> PathBuf {
        self.path("abra")
    }

    /// Create the canonical `servers/` that ccci-rundir requires, and return it.
    pub fn abra_servers(&self) -> PathBuf {
        let servers = self.abra_dir().join("servers");
        fs::create_dir_all(&servers).expect("create servers");
        servers
    }

    pub fn lockfile(&self, domain: &str) -> PathBuf {
        self.lock_dir().join(format!("cc-ci-app-{domain}.lock"))
    }

    /// A tool run the way a user runs it, with only this sandbox's variables set.
    pub fn cmd(&self, tool: &str) -> Command {
        let mut cmd = Command::new(bin(tool));
        scrub(&mut cmd);
        cmd.env("CCCI_APP_LOCK_DIR", self.lock_dir());
        cmd.env("CCCI_RUNS_DIR", self.runs_dir());
        cmd.env("CCCI_CANONICAL_ABRA_DIR", self.abra_dir());
        cmd
    }

    pub fn assert(&self, tool: &str) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.cmd(tool))
    }

    /// A named pipe a process blocks on (`read x < fifo`) until the test releases it.
    pub fn fifo(&self, name: &str) -> Gate {
        let path = self.path(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        Gate { path }
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

/// Remove every `CCCI_*` and `DRONE_*` variable the test did not set itself.
pub fn scrub(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CCCI_") || k.starts_with("DRONE_") {
            cmd.env_remove(&key);
        }
    }
}

/// One end of a fifo: `open` blocks until the process reaches its `read`, so releasing
/// a gate also proves the process got that far.
pub struct Gate {
    pub path: PathBuf,
}

impl Gate {
    pub fn release(&self) {
        let path = self.path.clone();
        within(
            PATIENCE,
            &format!("a reader on {}", path.display()),
            move || {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open fifo");
                f.write_all(b"go\n").expect("write fifo");
            },
        );
    }
}

/// Run `f` on a thread and fail the test if it takes longer than `limit`.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("gave up after {limit:?} waiting for {what}"))
}

/// A process running in the background whose stderr the test reads line by line.
pub struct Background {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
        use std::os::unix::process::CommandExt;
        // Its own process group, so that dropping it ends everything it started.
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until a stderr line contains `needle`; returns that line.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_any(&[needle]).1
    }

    /// Wait until a stderr line contains one of `needles`; returns which and the line.
    pub fn wait_for_any(&mut self, needles: &[&str]) -> (usize, String) {
        self.wait_for_any_within(PATIENCE, needles)
    }

    /// `wait_for_any` with a bound of its own, for waits that include a swarm deploy.
    pub fn wait_for_any_within(&mut self, limit: Duration, needles: &[&str]) -> (usize, String) {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(i) = needles.iter().position(|n| line.contains(n)) {
                        return (i, line);
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needles:?} within {limit:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Wait for the process to exit; returns its status and every stderr line.
    pub fn finish(self) -> (ExitStatus, Vec<String>) {
        self.finish_within(PATIENCE)
    }

    /// `finish` with a bound of its own, for runs that deploy and tear down an app.
    pub fn finish_within(mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < end,
                "process {} did not exit; saw {:?}",
                self.pid(),
                self.seen
            );
            thread::sleep(Duration::from_millis(5));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `sh -c script` with `$0` set to the tool's path, so scripts can call it as "$0".
pub fn sh_with(tool: &str, script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(bin(tool));
    scrub(&mut cmd);
    cmd
}

pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Wait until the kernel's lock table shows a blocked flock request on `path`'s inode
/// (a `->` line in /proc/locks): proof that a waiter is inside flock(2), for waiters
/// that print nothing.
pub fn wait_until_blocked_on(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(path).expect("lockfile").ino();
    let end = Instant::now() + PATIENCE;
    loop {
        let table = fs::read_to_string("/proc/locks").unwrap_or_default();
        let blocked = table.lines().any(|l| {
            l.contains("->")
                && l.split_whitespace()
                    .any(|f| f.rsplit(':').next() == Some(&ino.to_string()))
        });
        if blocked {
            return;
        }
        assert!(
            Instant::now() < end,
            "no waiter blocked on {} (inode {ino})",
            path.display()
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// Check enter/leave marks (`enter NAME ...` / `leave NAME`) for overlap: at most one
/// process inside at any point of the log. Returns how many entries were checked.
pub fn assert_no_overlap(log: &str) -> usize {
    let mut inside: Option<String> = None;
    let mut entries = 0;
    for (n, line) in log.lines().enumerate() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("enter"), Some(who)) => {
                if let Some(other) = &inside {
                    panic!(
                        "line {}: {who} entered while {other} was inside\n{log}",
                        n + 1
                    );
                }
                inside = Some(who.to_owned());
                entries += 1;
            }
            (Some("leave"), Some(who)) => {
                assert_eq!(
                    inside.as_deref(),
                    Some(who),
                    "line {}: unmatched leave\n{log}",
                    n + 1
                );
                inside = None;
            }
            _ => {}
        }
    }
    entries
}

/// Run a command to completion with the suite's patience as a bound, capturing output.
pub fn output_within(cmd: Command) -> std::process::Output {
    output_in(cmd, PATIENCE)
}

/// [`output_within`] with another bound: a deploy waits for its tasks to be stable
/// (`--stable-for`) and takes longer than the suite's usual patience on a loaded machine.
pub fn output_in(cmd: Command, limit: Duration) -> std::process::Output {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(limit);
    let out = cmd.output().expect("run");
    assert!(
        out.status.signal() != Some(9),
        "killed after {limit:?}: hung"
    );
    out
}

/// The bound for a command that deploys and waits for convergence.
pub const DEPLOY_PATIENCE: Duration = Duration::from_secs(90);

/// Tests that need root (files owned by someone else, mounts). CI runs as root: there a
/// missing root is a failure, not a skip.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI must run it"
    );
    eprintln!("skipping {test}: needs root");
    false
}

/// A process's output as text, for messages and `contains` checks.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A domain's swarm stack name, as every tool spells it (`Domain::stack_name`).
pub fn stack(domain: &str) -> String {
    ccci_core::domain::Domain::parse(domain)
        .expect("a valid test domain")
        .stack_name()
}

/// Write an executable script (a wrapper, a stand-in) at `path`.
pub fn write_executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, script).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
}
