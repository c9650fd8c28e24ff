//! The real swarm the deploy, janitor and chain tests run against (set up by
//! `tests/rig/swarm.sh`), and what those tests share: unique app domains, the abra
//! stand-in, and cleanup of everything a test created, even when it fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, bin};

/// Whether the swarm is there. In CI (`CI=true`) a missing swarm fails the test loudly;
/// elsewhere the test is skipped with the reason printed.
pub fn available(test: &str) -> bool {
    let state = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output();
    let image = Command::new("docker")
        .args(["image", "inspect", "ccci-test/busybox:1"])
        .output();
    let ready = match (&state, &image) {
        (Ok(s), Ok(i)) => {
            String::from_utf8_lossy(&s.stdout).trim() == "active" && i.status.success()
        }
        _ => false,
    };
    if ready {
        return true;
    }
    let reason =
        format!("{test}: no swarm (run `bash tests/rig/swarm.sh` as root first): {state:?}");
    assert!(std::env::var_os("CI").is_none(), "{reason}");
    eprintln!("skipping {reason}");
    false
}

/// The strict abra stand-in.
pub fn abra() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abra")
}

/// The fault-injecting stand-in for docker or abra (`CCCI_DOCKER`/`CCCI_ABRA`): passes
/// through to `$HANG_REAL`, but hangs or waits at a gate on the calls it is told to.
pub fn hang() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hang")
}

/// Wait until the file `path` has a line containing `needle`; returns that line.
pub fn wait_for_line(path: &std::path::Path, needle: &str, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < end,
            "no line with {needle:?} in {} within {limit:?}: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for its reaper).
pub fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.split(' ').next());
    !stat.is_empty() && state != Some("Z")
}

/// A run-app domain no other test uses: `<prefix>-<6 hex>.ci.example.org`.
pub fn domain(prefix: &str) -> String {
    let mut bytes = [0u8; 3];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut bytes).unwrap();
    format!(
        "{prefix}-{:02x}{:02x}{:02x}.ci.example.org",
        bytes[0], bytes[1], bytes[2]
    )
}

/// A sandbox with a canonical abra tree (`servers/default`) and the stand-in, that removes
/// every stack of its domains from the swarm when dropped — with docker directly, not
/// with the code under test.
pub struct App {
    pub sb: Sandbox,
    pub stacks: Vec<String>,
}

impl App {
    pub fn new() -> App {
        let sb = Sandbox::new();
        std::fs::create_dir_all(sb.abra_servers().join("default")).unwrap();
        App {
            sb,
            stacks: Vec::new(),
        }
    }

    /// A fresh domain, cleaned up with this app.
    pub fn domain(&mut self, prefix: &str) -> String {
        let d = domain(prefix);
        self.track(&d);
        d
    }

    pub fn track(&mut self, domain: &str) {
        self.stacks.push(domain.replace('.', "_"));
    }

    /// `ccci-rundir --run-id RUN -- ccci-lock D -- sh -c SCRIPT`, the harness calling
    /// `"$DEPLOY"` (ccci-deploy) as the Drone step would.
    pub fn chain(&self, run: &str, domain: &str, script: &str) -> Command {
        let mut cmd = self.sb.cmd("ccci-rundir");
        cmd.env("CCCI_ABRA", abra())
            .env("DEPLOY", bin("ccci-deploy"))
            .args(["--run-id", run, "--"])
            .arg(bin("ccci-lock"))
            .args([domain, "--", "sh", "-c", script]);
        cmd
    }

    /// `ccci-janitor ARGS`, eligible only for the domains `allow` matches (see [`only`]):
    /// the swarm is shared, and a janitor must never reap another test's apps.
    pub fn janitor(&self, allow: &str, args: &[&str]) -> Command {
        let mut cmd = self.sb.cmd("ccci-janitor");
        cmd.env("CCCI_RUN_APP_RE", allow).args(args);
        cmd
    }

    /// The app's `.env` in the canonical abra tree: a deploy writes it, a teardown and a
    /// reap remove it.
    pub fn env_file(&self, domain: &str) -> PathBuf {
        self.sb
            .abra_dir()
            .join(format!("servers/default/{domain}.env"))
    }

    /// ccci-deploy run directly (status, or the lock rule's refusals).
    pub fn deploy(&self) -> Command {
        let mut cmd = self.sb.cmd("ccci-deploy");
        cmd.env("CCCI_ABRA", abra())
            .env("ABRA_DIR", self.sb.abra_dir());
        cmd
    }
}

/// A janitor allowlist (`CCCI_RUN_APP_RE`) naming exactly these domains.
pub fn only(domains: &[&str]) -> String {
    let alts: Vec<String> = domains.iter().map(|d| d.replace('.', r"\.")).collect();
    format!("^({})$", alts.join("|"))
}

impl Drop for App {
    fn drop(&mut self) {
        for stack in &self.stacks {
            cleanup(stack);
        }
    }
}

/// Everything on the swarm whose name starts with `<stack>_`, or labelled with it.
pub fn leftovers(stack: &str) -> Vec<String> {
    let mut left = Vec::new();
    for kind in ["service", "secret", "config", "network", "volume"] {
        let out = Command::new("docker")
            .args([kind, "ls", "--format", "{{.Name}}"])
            .output()
            .unwrap();
        for name in String::from_utf8_lossy(&out.stdout).lines() {
            if name.starts_with(&format!("{stack}_")) {
                left.push(format!("{kind} {name}"));
            }
        }
    }
    left
}

fn cleanup(stack: &str) {
    let _ = Command::new("docker").args(["stack", "rm", stack]).output();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let left = leftovers(stack);
        if left.is_empty() {
            return;
        }
        for item in left {
            let (kind, name) = item.split_once(' ').unwrap();
            let _ = Command::new("docker").args([kind, "rm", name]).output();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
