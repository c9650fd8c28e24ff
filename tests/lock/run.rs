//! Run mode without contention: exit statuses, what the command is given, help.

use std::fs;

use predicates::prelude::*;

use super::D;
use crate::support::{Sandbox, output_within, sh_with};

#[test]
fn exit_codes_pass_through_and_no_waiting_line_when_uncontended() {
    let sb = Sandbox::new();
    for code in [0, 1, 7, 42, 255] {
        sb.assert("ccci-lock")
            .args([D, "--", "sh", "-c", &format!("exit {code}")])
            .assert()
            .code(code)
            .stderr(predicate::str::contains(format!(
                "== app lock: acquired {D} =="
            )))
            .stderr(predicate::str::contains("waiting").not());
    }
}

#[test]
fn a_command_killed_by_term_shows_as_143() {
    let sb = Sandbox::new();
    // ccci-lock execs the command, so the shell that ran it sees the signal: 128+15.
    let out = sh_with(
        "ccci-lock",
        &format!("\"$0\" {D} -- sh -c 'kill -TERM $$'; echo status=$?"),
    )
    .env("CCCI_APP_LOCK_DIR", sb.lock_dir())
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "status=143");
}

#[test]
fn the_command_gets_the_lock_descriptor_and_metadata_names_its_pid() {
    let sb = Sandbox::new();
    let out = sb
        .assert("ccci-lock")
        .env("DRONE_BUILD_NUMBER", "279")
        .args([D, "--", "sh", "-c"])
        .arg(concat!(
            "echo \"pid=$$\"; echo \"domain=$CCCI_LOCK_DOMAIN\"; echo \"file=$CCCI_LOCK_FILE\";",
            "echo \"fd_ino=$(stat -L -c %i /proc/$$/fd/$CCCI_LOCK_FD)\";",
            "echo \"file_ino=$(stat -c %i \"$CCCI_LOCK_FILE\")\"; echo \"meta=$(cat \"$CCCI_LOCK_FILE\")\""
        ))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
            .to_owned()
    };
    assert_eq!(field("domain"), D);
    assert_eq!(field("file"), sb.lockfile(D).display().to_string());
    assert_eq!(
        field("fd_ino"),
        field("file_ino"),
        "CCCI_LOCK_FD is not the lockfile"
    );
    let meta: serde_json::Value = serde_json::from_str(&field("meta")).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["domain"], D);
    assert_eq!(
        meta["pid"].to_string(),
        field("pid"),
        "metadata pid is not the command's"
    );
    assert_eq!(
        meta["run_id"], "279",
        "DRONE_BUILD_NUMBER is the fallback run id"
    );
    assert_eq!(meta["tool"], "ccci-lock");
    assert_eq!(meta["command"][0], "sh");
    assert!(meta["started_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn run_id_comes_from_the_option_then_ccci_run_id_then_drone() {
    let sb = Sandbox::new();
    let meta = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = sb.assert("ccci-lock");
        cmd.args(args)
            .args([D, "--", "sh", "-c", "cat \"$CCCI_LOCK_FILE\""]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()["run_id"].clone()
    };
    let both = [("CCCI_RUN_ID", "r-7"), ("DRONE_BUILD_NUMBER", "279")];
    assert_eq!(meta(&["--run-id", "opt"], &both), "opt");
    assert_eq!(meta(&[], &both), "r-7");
    assert_eq!(
        meta(&[], &[("CCCI_RUN_ID", ""), ("DRONE_BUILD_NUMBER", "279")]),
        "279"
    );
    assert_eq!(meta(&[], &[]), serde_json::Value::Null);
    sb.assert("ccci-lock")
        .args(["--run-id", "../x", D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("\"../x\""));
}

#[test]
fn missing_command_is_127_and_leaves_the_lock_free() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .args([D, "--", "/nonexistent/ccci-test-cmd"])
        .assert()
        .code(127)
        .stderr(predicate::str::contains(
            "ccci-lock: cannot run '/nonexistent/ccci-test-cmd'",
        ));
    sb.assert("ccci-lock")
        .args([D, "--", "ccci-no-such-command-on-path"])
        .assert()
        .code(127);
    // Free again: both our own probe and flock(1) get it at once.
    sb.assert("ccci-lock")
        .args(["--status", D])
        .assert()
        .code(0);
    let flock = std::process::Command::new("flock")
        .args(["-n", sb.lockfile(D).to_str().unwrap(), "true"])
        .status()
        .unwrap();
    assert!(
        flock.success(),
        "the lock was left held after a failed exec"
    );
}

#[test]
fn a_directory_as_command_is_126() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .args([D, "--"])
        .arg(sb.tmp.path())
        .assert()
        .code(126)
        .stderr(predicate::str::contains("cannot run"));
}

#[test]
fn a_script_whose_interpreter_is_missing_is_126_in_every_wrapper() {
    // The script was found; its `#!` interpreter is what is missing. One meaning for all
    // three wrappers (the guard forks, lock and rundir exec): 126, the reason named.
    let sb = Sandbox::new();
    sb.abra_servers();
    let script = sb.path("script");
    crate::support::write_executable(&script, "#!/nonexistent/interpreter\n");
    let wrappers: [(&str, &[&str]); 3] = [
        ("ccci-lock", &[D, "--"]),
        ("ccci-guard", &["--"]),
        ("ccci-rundir", &["--run-id", "r1", "--"]),
    ];
    for (tool, args) in wrappers {
        sb.assert(tool)
            .args(args)
            .arg(&script)
            .assert()
            .code(126)
            .stderr(predicate::str::contains("interpreter or loader is missing"));
        // A command that does not exist at all stays 127.
        sb.assert(tool)
            .args(args)
            .arg(sb.path("absent"))
            .assert()
            .code(127);
    }
}

#[test]
fn usage_errors_are_125_never_2() {
    let sb = Sandbox::new();
    for args in [
        &["--no-such-option", D, "--", "true"][..],
        &[D],
        &[D, "--"],
        &["--", "true"],
        &[D, "extra", "--", "true"],
        &["--wait", "soon", D, "--", "true"],
        &["-E", "300", D, "--", "true"],
        &["--json", D, "--", "true"],
    ] {
        sb.assert("ccci-lock")
            .args(args)
            .assert()
            .code(125)
            .stderr(predicate::str::starts_with("ccci-lock: "));
    }
}

#[test]
fn the_command_sees_the_callers_signal_mask_and_ignored_set() {
    // Rust's runtime ignores SIGPIPE before main; a wrapper must not pass that on.
    let script = concat!(
        "trap '' HUP USR2; grep -E 'SigBlk|SigIgn' /proc/self/status;",
        "echo --; \"$0\" ",
        "immi-ad3e33.ci.example.org",
        " -- grep -E 'SigBlk|SigIgn' /proc/self/status"
    );
    let sb = Sandbox::new();
    let out = sh_with("ccci-lock", script)
        .env("CCCI_APP_LOCK_DIR", sb.lock_dir())
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let (outside, inside) = out.split_once("--\n").expect("two listings");
    assert!(outside.contains("SigIgn"), "{out}");
    assert_eq!(
        outside, inside,
        "the command's signal state differs from its caller's"
    );
}

#[test]
fn help_answers_lock_dir_waiting_line_exit_status_and_environment() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("EXIT STATUS"))
        .stdout(predicate::str::contains("ENVIRONMENT"))
        .stdout(predicate::str::contains("/run/lock/cc-ci"))
        .stdout(predicate::str::contains("CCCI_APP_LOCK_DIR"))
        .stdout(predicate::str::contains("— waiting =="))
        .stdout(predicate::str::contains("75"));
    sb.assert("ccci-lock")
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn lock_dir_is_created_0755_and_an_unusable_one_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let dir = sb.path("locks");
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", &dir)
        .args([D, "--", "true"])
        .assert()
        .success();
    let mode = fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    // Only the lock dir itself is created, never a chain of parents with whatever mode.
    let deep = sb.path("deep/er/locks");
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", &deep)
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(deep.display().to_string()))
        .stderr(predicate::str::contains("CCCI_APP_LOCK_DIR"));
    assert!(!sb.path("deep").exists());

    fs::write(sb.path("a-file"), "").unwrap();
    let bad = sb.path("a-file/locks");
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", &bad)
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(bad.display().to_string()))
        .stderr(predicate::str::contains("CCCI_APP_LOCK_DIR"));
}

#[test]
fn closed_standard_descriptors_never_become_the_lock() {
    // Started with stdin and stderr closed, the lockfile must not land on fd 0 or 2:
    // the command's own `2>/dev/null` would then release the lock.
    let sb = Sandbox::new();
    let script = format!(
        "exec 0<&- 2>&-; \"$0\" {D} -- sh -c 'echo fd=$CCCI_LOCK_FD; exec 2>/dev/null; \
         flock -n \"$CCCI_LOCK_FILE\" echo SECOND-HOLDER'"
    );
    let out = sh_with("ccci-lock", &script)
        .env("CCCI_APP_LOCK_DIR", sb.lock_dir())
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let fd: i32 = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("fd="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fd > 2, "the lock is on fd {fd}");
    assert!(!out.contains("SECOND-HOLDER"), "{out}");
    // And the metadata is intact JSON, not diagnostics written into the lockfile.
    let meta = fs::read(sb.lockfile(D)).unwrap();
    serde_json::from_slice::<serde_json::Value>(&meta).expect("lockfile holds only metadata");
}

#[test]
fn a_tool_that_cannot_write_its_output_fails_with_125_not_a_signal() {
    let sb = Sandbox::new();
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let status = sb
        .cmd("ccci-lock")
        .arg("--status")
        .stdout(full())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(125));
    // A diagnostic that cannot be written is dropped; the command still runs.
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([D, "--", "sh", "-c", "exit 7"]).stderr(full());
    assert_eq!(cmd.status().unwrap().code(), Some(7));
}

#[test]
fn a_nested_lock_of_the_same_domain_runs_instead_of_waiting_for_itself() {
    let sb = Sandbox::new();
    let script = format!("\"$0\" {D} -- \"$0\" {D} -- sh -c 'echo inner-ran'");
    let mut cmd = sh_with("ccci-lock", &script);
    cmd.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
    let out = output_within(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inner-ran"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already held by this run"),
        "{out:?}"
    );
}

#[test]
fn d_then_e_then_d_again_runs_instead_of_waiting_for_itself() {
    // The inner lock of another domain overwrites CCCI_LOCK_DOMAIN / CCCI_LOCK_FD: only
    // the kernel can tell that the descriptor for D is still ours.
    let sb = Sandbox::new();
    let script =
        format!("\"$0\" {D} -- \"$0\" dep.example -- \"$0\" -n {D} -- sh -c 'echo inner-ran'");
    let mut cmd = sh_with("ccci-lock", &script);
    cmd.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
    let out = output_within(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inner-ran"),
        "{out:?}"
    );
}

#[test]
fn d_then_e_then_ccci_deploy_of_d_passes_the_lock_rule() {
    // ccci-deploy's lock rule asks the kernel too: under D then E, it holds D. (Docker is
    // pointed nowhere: past the lock rule (78) it stops at the docker check, 69.)
    let sb = Sandbox::new();
    let script =
        format!("\"$0\" {D} -- \"$0\" dep.example -- \"$DEPLOY\" down {D}; echo \"deploy=$?\"");
    let mut cmd = sh_with("ccci-lock", &script);
    cmd.env("CCCI_APP_LOCK_DIR", sb.lock_dir())
        .env("DEPLOY", crate::support::bin("ccci-deploy"))
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    let out = output_within(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("deploy=69"), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not holding the app lock"),
        "{out:?}"
    );
}

#[test]
fn lock_wait_env_empty_is_unset_and_garbage_is_named() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .env("CCCI_LOCK_WAIT", "")
        .args([D, "--", "true"])
        .assert()
        .success();
    sb.assert("ccci-lock")
        .env("CCCI_LOCK_WAIT", "soon")
        .args([D, "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("CCCI_LOCK_WAIT"));
    // --status never waits, so it does not care.
    sb.assert("ccci-lock")
        .env("CCCI_LOCK_WAIT", "soon")
        .arg("--status")
        .assert()
        .success();
    // An empty lock dir variable means the default, not an error.
    sb.assert("ccci-lock")
        .env("CCCI_APP_LOCK_DIR", "")
        .args(["--status", "--json", D])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"lock_dir\":\"/run/lock/cc-ci\""));
}

#[test]
fn a_relative_lock_dir_gives_the_command_an_absolute_lockfile_path() {
    let sb = Sandbox::new();
    sb.assert("ccci-lock")
        .current_dir(sb.tmp.path())
        .env("CCCI_APP_LOCK_DIR", "locks")
        .args([
            D,
            "--",
            "sh",
            "-c",
            "cd /; test -f \"$CCCI_LOCK_FILE\" && echo \"$CCCI_LOCK_FILE\"",
        ])
        .assert()
        .success()
        .stdout(predicate::str::diff(format!(
            "{}\n",
            sb.lockfile(D).display()
        )));
}
