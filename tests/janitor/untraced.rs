//! A lock no descriptor explains (held through a memory mapping) stops every reap and
//! shows in the metrics; another user's such lock does not.

use std::fs;
use std::process::Command;

use super::{only, pass_within};
use crate::support::{Background, text};
use crate::swarm::{self, App};

#[test]
fn a_lock_no_descriptor_explains_stops_every_reap_and_shows_in_the_metrics() {
    // Issue 17 point 3: a flock on the lock dir's device that no process has a descriptor
    // for (held through a memory mapping (plain mmap(2): Python's own mmap keeps a dup)
    // after its descriptor was closed) could be any
    // domain's run, with its lockfile removed by hand. The janitor cannot prove D free:
    // it leaves D's app, says why, and the metric counts the untraced lock.
    if !swarm::available("a_lock_no_descriptor_explains_stops_every_reap_and_shows_in_the_metrics")
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j14");
    app.env_only(&d);
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    let gate = app.sb.fifo("gate");
    let script = format!(
        "import ctypes, fcntl, os, sys\n\
         fd = os.open('{lockfile}', os.O_RDWR | os.O_CREAT, 0o600)\n\
         os.write(fd, b'x' * 4096)\n\
         fcntl.flock(fd, fcntl.LOCK_EX)\n\
         libc = ctypes.CDLL(None)\n\
         libc.mmap.restype = ctypes.c_void_p\n\
         libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n\
         assert libc.mmap(None, 4096, 1, 1, fd, 0) not in (None, ctypes.c_void_p(-1).value)\n\
         os.close(fd)\n\
         print('held', file=sys.stderr, flush=True)\n\
         open('{gate}').read()\n",
        lockfile = app.sb.lockfile(&d).display(),
        gate = gate.path.display()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let mut holder = Background::spawn(cmd);
    holder.wait_for("held");
    fs::remove_file(app.sb.lockfile(&d)).unwrap();
    let metrics = app.sb.path("metrics.prom");
    let out = pass_within(app.janitor(
        &only(&[&d]),
        &["--json", "--metrics-file", metrics.to_str().unwrap()],
    ));
    let err = text(&out.stderr);
    // Nothing failed, but nothing could be reaped: an operator must look.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot prove {d} free, leaving it")),
        "{err}"
    );
    assert!(
        app.env_file(&d).exists(),
        "a possibly live run's app was reaped: {err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["domains"][0]["result"], "left", "{doc}");
    // Ours is among the untraced locks; the metric counts exactly what the pass listed.
    // (Not "1": a test running beside this one may hold such a lock on the same device.)
    let untraced = doc["domains"][0]["untraced"].as_array().expect("untraced");
    assert!(
        untraced.iter().any(|u| u["pids"]
            .as_array()
            .is_some_and(|p| p.contains(&holder.pid().into()))),
        "{doc}"
    );
    let metrics = fs::read_to_string(&metrics).unwrap();
    assert!(
        metrics.contains(&format!("ccci_janitor_untraced_locks {}\n", untraced.len())),
        "{metrics}"
    );
    gate.release();
    assert!(holder.finish().0.success());
    // Another local user can take a flock the same way on any file of this filesystem it
    // may read: that cannot be a run (runs are the lock dir's owner's), and must not
    // stop the host's reaping.
    let readable = app.sb.path("readable");
    fs::write(&readable, "x".repeat(4096)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(app.sb.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).unwrap();
    let gate2 = app.sb.fifo("gate2");
    fs::set_permissions(&gate2.path, fs::Permissions::from_mode(0o666)).unwrap();
    let script = script
        .replace(
            &app.sb.lockfile(&d).display().to_string(),
            &readable.display().to_string(),
        )
        .replace("os.O_RDWR | os.O_CREAT, 0o600", "os.O_RDONLY")
        .replace("os.write(fd, b'x' * 4096)\n", "")
        .replace(
            &gate.path.display().to_string(),
            &gate2.path.display().to_string(),
        );
    let mut cmd = Command::new("setpriv");
    // Debian's python3: another user cannot reach a python under root's home (pyenv).
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        &script,
    ]);
    let mut other = Background::spawn(cmd);
    other.wait_for("held");
    // Once it is gone (and whatever another user holds), the same pass reaps D.
    let out = pass_within(app.janitor(&only(&[&d]), &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!app.env_file(&d).exists(), "{}", text(&out.stderr));
    gate2.release();
    assert!(other.finish().0.success());
}
