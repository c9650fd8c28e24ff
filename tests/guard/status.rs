//! Exit statuses in guard.md's order, usage errors, exec errors, the report.

use std::fs;

use assert_cmd::Command as Assert;
use predicates::prelude::*;

use super::Run;

fn assert(cmd: std::process::Command) -> Assert {
    Assert::from_std(cmd)
}

#[test]
fn every_exit_code_passes_through() {
    let run = Run::new();
    // One guard per code, all from one shell so the loop costs a few ms per code.
    let out = run
        .sh(concat!(
            "i=0; while [ $i -le 255 ]; do \"$0\" -q -- sh -c \"exit $i\"; ",
            "echo \"$i $?\"; i=$((i+1)); done"
        ))
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 256, "{out}");
    for line in lines {
        let (sent, got) = line.split_once(' ').unwrap();
        assert_eq!(sent, got, "exit {sent} came back as {got}");
    }
    run.assert_nothing_alive();
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_n() {
    let run = Run::new();
    for (signal, status) in [("TERM", 143), ("KILL", 137), ("USR1", 138), ("SEGV", 139)] {
        let mut cmd = run.guard(&["--", "sh", "-c"]);
        cmd.arg(format!("ulimit -c 0; kill -{signal} $$"));
        assert(cmd)
            .assert()
            .code(status)
            .stderr(predicate::str::contains(format!(
                "'sh' exited with status {status}"
            )));
    }
}

#[test]
fn a_deadline_gives_124_or_with_preserve_status_the_commands_own() {
    let run = Run::new();
    assert(run.guard(&["-d", "0.2", "--", "sleep", "10"]))
        .assert()
        .code(124)
        .stderr(
            predicate::str::is_match(
                r"== guard: deadline 0\.2s reached — sending TERM to process group \d+ ==",
            )
            .unwrap(),
        );
    assert(run.guard(&["-d", "0.2", "--preserve-status", "--", "sleep", "10"]))
        .assert()
        .code(143);
    assert(run.guard(&[
        "-d",
        "0.2",
        "-s",
        "USR1",
        "--preserve-status",
        "--",
        "sleep",
        "10",
    ]))
    .assert()
    .code(138);
    run.assert_nothing_alive();
}

#[test]
fn a_command_that_ignores_term_is_killed_after_the_grace_period_137() {
    let run = Run::new();
    let report = run.path("report.json");
    assert(run.guard(&[
        "-d",
        "0.2",
        "-k",
        "0.3",
        "--report",
        &report,
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]))
    .assert()
    .code(137)
    .stderr(predicate::str::contains(
        "== guard: grace 0.3s over — sending KILL to 2 processes ==",
    ));
    // --preserve-status does not change it: the order puts 137 before 124.
    assert(run.guard(&[
        "-d",
        "0.2",
        "-k",
        "0.3",
        "--preserve-status",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]))
    .assert()
    .code(137);
    run.assert_nothing_alive();
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "killed");
    assert_eq!(r["exit_status"], 137);
    assert_eq!(r["signal"], "KILL");
    assert_eq!(r["termination"]["cause"], "deadline");
}

#[test]
fn grace_and_deadline_come_from_the_environment_and_the_signal_from_s() {
    let run = Run::new();
    let mut cmd = run.guard(&["--", "sh", "-c", "trap '' TERM; sleep 100"]);
    cmd.env("CCCI_DEADLINE", "0.2").env("CCCI_GRACE", "0.3");
    assert(cmd)
        .assert()
        .code(137)
        .stderr(predicate::str::contains("== guard: deadline 0.2s reached"))
        .stderr(predicate::str::contains("== guard: grace 0.3s over"));
    // A TERM-proof command ended at the deadline by `-s KILL`: it died of a KILL the
    // guard sent, so 137, as `timeout -s KILL` says, and the report says `killed`.
    let report = run.path("kill-report.json");
    assert(run.guard(&[
        "-d",
        "0.2",
        "-s",
        "KILL",
        "--report",
        &report,
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]))
    .assert()
    .code(137)
    .stderr(predicate::str::contains("sending KILL to process group"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "killed", "{report}");
    assert_eq!(report["exit_status"], 137, "{report}");
    run.assert_nothing_alive();
}

#[test]
fn a_real_time_deadline_signal_is_sent_as_timeout_sends_it() {
    // `-s RTMIN+2` and its number are what timeout(1) users write; nix's Signal has no
    // real-time signals, so this goes through the guard's own signal numbers.
    let run = Run::new();
    let rt = nix::libc::SIGRTMIN() + 2;
    for sig in ["RTMIN+2".to_owned(), rt.to_string()] {
        let report = run.path("report.json");
        assert(run.guard(&[
            "-d",
            "0.2",
            "-s",
            &sig,
            "--preserve-status",
            "--report",
            &report,
            "--",
            "sleep",
            "10",
        ]))
        .assert()
        .code(128 + rt)
        .stderr(predicate::str::contains(format!(
            "sending {rt} to process group"
        )));
        let r: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(r["termination"]["signal"], rt.to_string(), "{r}");
        assert_eq!(r["signal"], rt.to_string(), "the command died of it: {r}");
        run.assert_nothing_alive();
    }
    assert(run.guard(&["-s", "RTMAX+1", "--", "true"]))
        .assert()
        .code(125)
        .stderr(predicate::str::contains("invalid signal \"RTMAX+1\""));
}

#[test]
fn a_deadline_too_small_for_a_float_is_still_a_deadline() {
    // Only an exact zero means "no deadline" (docs/guard.md): 0.000…1 with more zeros than
    // an f64 can hold underflows to 0.0 in the arithmetic, and must still fire at once.
    let run = Run::new();
    let tiny = format!("0.{}1", "0".repeat(400));
    let out = crate::support::output_within(run.guard(&["-d", &tiny, "--", "sleep", "10"]));
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    run.assert_nothing_alive();
}

#[test]
fn a_deadline_lets_the_commands_term_cleanup_run_then_124() {
    let run = Run::new();
    let mark = run.path("cleaned");
    let mut cmd = run.guard(&["-d", "0.2", "--", "sh", "-c"]);
    cmd.arg(format!(
        "trap 'sleep 0.5; echo cleaned > \"{mark}\"; exit 0' TERM; sleep 100 & wait"
    ));
    assert(cmd).assert().code(124);
    assert_eq!(fs::read_to_string(&mark).unwrap(), "cleaned\n");
    run.assert_nothing_alive();
}

#[test]
fn missing_command_127_directory_126_bad_options_125() {
    let run = Run::new();
    assert(run.guard(&["--", "/nonexistent/ccci-test-cmd"]))
        .assert()
        .code(127)
        .stderr(predicate::str::contains(
            "ccci-guard: cannot run '/nonexistent/ccci-test-cmd': No such file or directory",
        ));
    assert(run.guard(&["--", "ccci-no-such-command-on-path"]))
        .assert()
        .code(127);
    let dir = run.path("");
    assert(run.guard(&["--", &dir]))
        .assert()
        .code(126)
        .stderr(predicate::str::contains(format!("cannot run '{dir}'")));
    for args in [
        &["-d", "soon", "--", "true"][..],
        &["--grace", "1x", "--", "true"],
        &["--signal", "NOPE", "--", "true"],
        &["--no-such-option", "--", "true"],
        &["--"],
        &[],
    ] {
        assert(run.guard(args))
            .assert()
            .code(125)
            .stderr(predicate::str::starts_with("ccci-guard: "));
    }
    assert(run.guard(&["-d", "soon", "--", "true"]))
        .assert()
        .stderr(predicate::str::contains("invalid duration \"soon\""));
    let mut env = run.guard(&["--", "true"]);
    env.env("CCCI_DEADLINE", "whenever");
    assert(env).assert().code(125);
}

#[test]
fn logs_start_and_finish_lines_unless_quiet() {
    let run = Run::new();
    assert(run.guard(&["-d", "1h", "-k", "2m", "--", "sh", "-c", "exit 3"]))
        .assert()
        .code(3)
        .stderr(predicate::str::is_match(
            r"^ccci-guard: running 'sh -c exit 3' as pid \d+ \(deadline 1h at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, grace 2m\)\nccci-guard: 'sh' exited with status 3 after \d",
        )
        .unwrap());
    assert(run.guard(&["-d", "0", "--", "true"]))
        .assert()
        .success()
        .stderr(predicate::str::contains("(no deadline, grace 5m)"));
    assert(run.guard(&["-q", "--", "true"]))
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
}

#[test]
fn a_start_line_cut_to_one_write_is_still_utf_8() {
    // A line longer than PIPE_BUF is cut, ending in "[...]"; the cut must not fall inside
    // a character and leave a CI log with a byte no decoder takes. One of the two
    // alignments puts it in the middle of an "é" (two bytes).
    let run = Run::new();
    let long = "é".repeat(3000);
    for pad in ["", "a"] {
        let out = assert(run.guard(&["--", "true", &format!("{pad}{long}")]))
            .assert()
            .success()
            .get_output()
            .stderr
            .clone();
        let first = out.split(|&b| b == b'\n').next().unwrap();
        assert!(first.len() <= 4096, "{} bytes", first.len());
        let first = String::from_utf8(first.to_vec())
            .unwrap_or_else(|e| panic!("pad {pad:?}: not UTF-8: {e}"));
        assert!(first.ends_with("é [...]"), "pad {pad:?}: {first}");
    }
}

#[test]
fn the_report_is_written_atomically_after_everything_is_reaped() {
    let run = Run::new();
    fs::create_dir(run.sb.path("out")).unwrap();
    let report = run.path("out/report.json");
    let mut cmd = run.guard(&["-d", "0.3", "-k", "10s", "--", "sh", "-c"]);
    cmd.arg("setsid sleep 100 & echo \"daemon $!\" >&2; sleep 100 & wait")
        .env("CCCI_GUARD_REPORT", &report);
    let out = assert(cmd).assert().code(124).get_output().stderr.clone();
    let out = String::from_utf8(out).unwrap();
    let daemon = out
        .lines()
        .find(|l| l.starts_with("daemon "))
        .map(|l| super::number_after(l, "daemon"))
        .unwrap_or_else(|| panic!("{out}"));
    let names = crate::support::list(&run.sb.path("out"));
    assert_eq!(names, ["report.json"], "a temp file was left behind");
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["version"], 1);
    assert_eq!(r["command"][0], "sh");
    assert_eq!(r["outcome"], "deadline");
    assert_eq!(r["exit_status"], 124);
    assert_eq!(r["code"], serde_json::Value::Null);
    assert_eq!(r["signal"], "TERM");
    assert_eq!(r["deadline_ms"], 300);
    assert_eq!(r["grace_ms"], 10_000);
    assert_eq!(r["termination"]["cause"], "deadline");
    assert_eq!(r["termination"]["signal"], "TERM");
    assert!(r["termination"]["at_ms"].as_u64().unwrap() >= 300);
    assert!(r["duration_ms"].as_u64().unwrap() >= 300);
    assert!(r["started_at"].as_str().unwrap().ends_with('Z'));
    // The setsid'd sleep was no member of the group: the sweep ended it. (The group's
    // own sleep may be listed too, when it was still dying of the deadline's TERM.)
    let leftovers = r["leftovers"].as_array().unwrap();
    let swept = leftovers
        .iter()
        .find(|l| l["pid"] == daemon)
        .unwrap_or_else(|| panic!("{daemon} not among the leftovers: {r}"));
    assert_eq!(swept["comm"], "sleep");
    assert_eq!(swept["signal"], "TERM");
    run.assert_nothing_alive();
}

#[test]
fn help_has_exit_status_and_environment_sections() {
    let run = Run::new();
    assert(run.guard(&["--help"]))
        .assert()
        .success()
        .stdout(predicate::str::contains("EXIT STATUS"))
        .stdout(predicate::str::contains("ENVIRONMENT"))
        .stdout(predicate::str::contains("CCCI_DEADLINE"))
        .stdout(predicate::str::contains("CCCI_GUARD_REPORT"))
        .stdout(predicate::str::contains("124"));
    assert(run.guard(&["--version"]))
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_stderr_nobody_reads_does_not_stop_the_grace_kill() {
    // Drone stops reading a step's output pipe: the guard's log lines must not block its
    // loop, or after the deadline the KILL would never come. Its stderr here is a pipe
    // filled to the brim that nobody reads until the guard has exited.
    let run = Run::new();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    super::fill(&write_end);
    let report = run.path("report.json");
    let mut guard = run.guard(&[
        "-d",
        "0.2",
        "-k",
        "0.3",
        "--report",
        &report,
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]);
    guard.stderr(std::fs::File::from(write_end));
    let mut guard = guard.spawn().unwrap();
    let status = super::exit_within(&mut guard, "the guard hung on its stderr");
    assert_eq!(status.code(), Some(137), "the grace period ended in a KILL");
    run.assert_nothing_alive();
    // The lines it could not write are gone; the report has the facts.
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "killed", "{r}");
    drop(read_end);
}

#[test]
fn an_empty_variable_counts_as_unset() {
    // docs/environment.md: `CCCI_DEADLINE=` (a Drone secret that is not set) is the
    // default, not a usage error; the command still sees the variable, empty.
    let run = Run::new();
    let mut cmd = run.guard(&["--", "sh", "-c", "echo \"[${CCCI_DEADLINE-unset}]\""]);
    cmd.env("CCCI_DEADLINE", "")
        .env("CCCI_GRACE", "")
        .env("CCCI_GUARD_REPORT", "");
    assert(cmd).assert().success().stdout("[]\n").stderr(
        predicate::str::contains("(deadline 1h at ").and(predicate::str::contains("grace 5m)")),
    );
}
