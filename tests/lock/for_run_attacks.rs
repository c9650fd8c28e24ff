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
    py.args(["-c", script])
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

/// A harness that asks for one dependency from two threads at once (two tests that both
/// need it): both starters find DEP not yet held by the run and start a keeper each. Both
/// keepers wait for another run's hold; when it ends one keeper takes DEP — and the other
/// must see that its own run holds it now, not wait for its sibling until the run ends
/// (the run waits for it: that would be forever).
#[test]
fn two_for_runs_of_one_domain_at_once_in_one_run_both_return() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    let other = hold_until(&sb, DEP, &gate);
    let harness = format!(
        r#"
import subprocess, sys, threading
def take(name):
    rc = subprocess.run([sys.argv[1], "--for-run", "{DEP}"], stdout=subprocess.PIPE).returncode
    sys.stderr.write("%s %d\n" % (name, rc)); sys.stderr.flush()
threads = [threading.Thread(target=take, args=(n,)) for n in ("first", "second")]
for t in threads: t.start()
for t in threads: t.join()
sys.stderr.write("harness done\n")
"#
    );
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "python3", "-c", &harness])
        .arg(bin("ccci-lock"));
    let mut run = Background::spawn(cmd);
    // Both keepers are waiting for the other run, and say so.
    let waiting = format!("== app lock: another run of {DEP} in flight");
    run.wait_for(&waiting);
    run.wait_for(&waiting);
    gate.release();
    let (status, seen) = run.finish_within(PATIENCE);
    assert!(status.success(), "{seen:?}");
    for line in ["first 0", "second 0", "harness done"] {
        assert!(seen.iter().any(|l| l == line), "{line}: {seen:?}");
    }
    assert!(
        seen.iter().any(|l| l.contains(&format!(
            "== app lock: {DEP} is already held by this run (kept by pid"
        ))),
        "{seen:?}"
    );
    drop(other);
}

/// The keeper lives as long as the run, so it must not keep what its starter was given
/// beyond the standard streams: a pipe passed down (`pass_fds`, a shell's `3>&1`, a make
/// jobserver) would not see its end until the run ends — and a harness that reads it to
/// its end before going on would wait for itself.
#[test]
fn a_keeper_keeps_no_descriptor_its_starter_was_given() {
    let sb = Sandbox::new();
    let harness = format!(
        r#"
import os, subprocess, sys
r, w = os.pipe()
rc = subprocess.run([sys.argv[1], "--for-run", "{DEP}"], pass_fds=(w,)).returncode
os.close(w)
os.set_blocking(r, False)
try:
    left = "closed" if os.read(r, 1) == b"" else "data"
except BlockingIOError:
    left = "open"
sys.stderr.write("for-run %d, pipe %s\n" % (rc, left))
"#
    );
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "python3", "-c", &harness])
        .arg(bin("ccci-lock"));
    let mut run = Background::spawn(cmd);
    assert_eq!(
        run.wait_for("for-run "),
        "for-run 0, pipe closed",
        "{:?}",
        run.seen
    );
    assert!(run.finish().0.success());
}

/// A nested `ccci-lock E -- cmd` of a domain held above it or kept for the run has no
/// descriptor to hand on: cmd must still learn which lock it runs under (E, not the
/// app's domain left in the environment by the outer ccci-lock), and no CCCI_LOCK_FD
/// that names whatever descriptor happens to have that number in cmd.
#[test]
fn a_nested_lock_of_a_kept_or_inherited_domain_names_that_domain_and_no_descriptor() {
    let sb = Sandbox::new();
    let harness = format!(
        r#"
import subprocess, sys
lock = sys.argv[1]
subprocess.run([lock, "--for-run", "{DEP}"], check=True)
for domain in ("{DEP}", "{D}"):
    out = subprocess.run([lock, "-q", domain, "--", "sh", "-c",
        'echo "$CCCI_LOCK_DOMAIN [$CCCI_LOCK_FD] $CCCI_LOCK_FILE"'],
        stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    sys.stderr.write("nested " + out + "\n")
sys.stderr.write("harness done\n")
"#
    );
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "python3", "-c", &harness])
        .arg(bin("ccci-lock"));
    let run = Background::spawn(cmd);
    let (status, seen) = run.finish();
    assert!(status.success(), "{seen:?}");
    for domain in [DEP, D] {
        let want = format!("nested {domain} [] {}", sb.lockfile(domain).display());
        assert!(seen.contains(&want), "{want}: {seen:?}");
    }
}

/// `--for-run DEP` in one thread of the harness, `ccci-lock DEP -- cmd` in another, both
/// waiting for another run's hold of DEP. When it ends and the keeper takes DEP, the
/// nested ccci-lock waits for its own run's keeper — which lives until the harness ends,
/// which waits for the nested ccci-lock. It must see that its run holds DEP now and run
/// cmd. (The keeper waits first, so the kernel's wake-up order gives it DEP; should the
/// nested one win instead, it runs at once and the keeper follows.)
#[test]
fn a_nested_lock_waiting_beside_its_run_s_keeper_runs_when_the_keeper_takes_the_domain() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    let go = sb.fifo("go");
    let other = hold_until(&sb, DEP, &gate);
    let harness = format!(
        r#"
import subprocess, sys, threading
lock, go = sys.argv[1], sys.argv[2]
def keep():
    rc = subprocess.run([lock, "--for-run", "{DEP}"], stdout=subprocess.PIPE).returncode
    sys.stderr.write("for-run %d\n" % rc); sys.stderr.flush()
def nested():
    rc = subprocess.run([lock, "{DEP}", "--", "true"]).returncode
    sys.stderr.write("nested %d\n" % rc); sys.stderr.flush()
a = threading.Thread(target=keep); a.start()
open(go).read()  # the keeper waits now
b = threading.Thread(target=nested); b.start()
a.join(); b.join()
sys.stderr.write("harness done\n")
"#
    );
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "python3", "-c", &harness])
        .arg(bin("ccci-lock"))
        .arg(&go.path);
    let mut run = Background::spawn(cmd);
    let waiting = format!("== app lock: another run of {DEP} in flight");
    run.wait_for(&waiting);
    go.release();
    run.wait_for(&waiting);
    gate.release();
    let (status, seen) = run.finish_within(PATIENCE);
    assert!(status.success(), "{seen:?}");
    for line in ["for-run 0", "nested 0", "harness done"] {
        assert!(seen.iter().any(|l| l == line), "{line}: {seen:?}");
    }
    drop(other);
}

/// The harness is killed while its `--for-run DEP` waits for another run: the starter
/// lives on (nothing killed it) and so does its keeper. The keeper must give up within
/// its recheck instead of taking DEP, later, for a run that is over.
#[test]
fn a_keeper_whose_run_ended_while_it_waited_gives_up() {
    let sb = Sandbox::new();
    let gate = sb.fifo("gate");
    let other = hold_until(&sb, DEP, &gate);
    let harness = format!(
        r#"
import subprocess, sys
subprocess.Popen([sys.argv[1], "--for-run", "{DEP}"], stdout=subprocess.PIPE)
open(sys.argv[2]).read()
"#
    );
    let stop = sb.fifo("stop");
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "python3", "-c", &harness])
        .arg(bin("ccci-lock"))
        .arg(&stop.path);
    let mut run = Background::spawn(cmd);
    run.wait_for(&format!("== app lock: another run of {DEP} in flight"));
    // ccci-lock exec'd the harness: its pid is the run's top.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let line = run.wait_for("ended while waiting for");
    assert!(line.contains("not taking it"), "{line}");
    drop(other);
}
