//! ccci-deploy against a real swarm (../shared/spec/deploy.md).

mod abra_flags;

use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::support::{DEPLOY_PATIENCE, Sandbox, output_in, output_within, text, write_executable};
use crate::swarm::{self, App, leftovers};

#[test]
fn up_converges_is_counted_once_and_down_removes_everything_twice() {
    if !swarm::available("up_converges_is_counted_once_and_down_removes_everything_twice") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t1");
    let stack = d.replace('.', "_");
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" count --expect 1 && \
         \"$DEPLOY\" status {d} --json > \"$CCCI_RUN_DIR/status.json\" && \
         \"$DEPLOY\" down {d} && \"$DEPLOY\" down {d}"
    );
    let out = output_in(app.chain("1", &d, &script), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} converged in ")) && err.contains("(2 services) =="),
        "{err}"
    );
    assert_eq!(text(&out.stdout).trim(), "1", "count");
    // Status saw every kind of resource while it was up.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.sb.runs_dir().join("1/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["version"], 1);
    assert_eq!(status["stack"], stack.as_str());
    assert_eq!(status["services"].as_array().unwrap().len(), 2);
    for kind in ["volumes", "secrets", "configs", "networks", "env_files"] {
        assert_eq!(
            status[kind].as_array().unwrap().len(),
            1,
            "{kind}: {status}"
        );
    }
    // The first down removed all of it, the second found nothing.
    let teardown: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("== teardown:"))
        .collect();
    assert_eq!(teardown.len(), 2, "{err}");
    assert!(
        teardown[0]
            .contains("removed 2 services, 1 volume, 1 secret, 1 config, 1 network, 1 env file in"),
        "{err}"
    );
    assert!(teardown[1].contains("removed nothing"), "{err}");
    assert_eq!(leftovers(&stack), Vec::<String>::new());
    assert!(
        !app.sb
            .abra_dir()
            .join(format!("servers/default/{d}.env"))
            .exists()
    );
}

#[test]
fn two_ups_in_one_run_fail_the_count_with_the_dg41_line() {
    if !swarm::available("two_ups_in_one_run_fail_the_count_with_the_dg41_line") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t2");
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --set APP_REPLICAS=1 --timeout 2m && \
         \"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \"$DEPLOY\" count --expect 1"
    );
    let out = output_in(app.chain("2", &d, &script), DEPLOY_PATIENCE);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("!! deploy-count 2 != 1 (DG4.1 violation)"),
        "{}",
        text(&out.stderr)
    );
    // --set reached the app's .env.
    let env = std::fs::read_to_string(app.sb.abra_dir().join(format!("servers/default/{d}.env")))
        .unwrap();
    assert!(env.contains("APP_REPLICAS=1"), "{env}");
}

#[test]
fn up_and_down_outside_the_lock_or_run_dir_are_78() {
    let sb = Sandbox::new();
    let d = swarm::domain("t3");
    // No lock at all.
    for sub in [&["up", &d, "--recipe", "two-services"][..], &["down", &d]] {
        sb.assert("ccci-deploy")
            .args(sub)
            .env("CCCI_DEPLOY_COUNT_FILE", sb.path("deploys"))
            .assert()
            .code(78)
            .stderr(predicate::str::contains(format!(
                "ccci-deploy: not holding the app lock for {d} — run under 'ccci-lock {d} -- ...'"
            )));
    }
    // Under the lock of another domain: still not ours.
    let other = swarm::domain("t3");
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([&other, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["down", &d]);
    assert_eq!(cmd.status().unwrap().code(), Some(78));
    // Under the lock, but not in a run dir: nowhere to count the deploy.
    let mut cmd = sb.cmd("ccci-lock");
    cmd.args([&d, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["up", &d, "--recipe", "two-services"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("CCCI_DEPLOY_COUNT_FILE"));
    assert!(!sb.path("deploys").exists(), "counted outside the lock");
}

#[test]
fn tearing_down_a_b_leaves_a_b_c_alone() {
    if !swarm::available("tearing_down_a_b_leaves_a_b_c_alone") {
        return;
    }
    let mut app = App::new();
    let ab = app.domain("t4");
    let abc = format!("{ab}.sub");
    app.track(&abc);
    let (s_ab, s_abc) = (ab.replace('.', "_"), abc.replace('.', "_"));
    for (run, d) in [("4a", &ab), ("4b", &abc)] {
        let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
        let out = output_in(app.chain(run, d, &up), DEPLOY_PATIENCE);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let before_abc = leftovers(&s_abc);
    assert!(
        before_abc
            .iter()
            .any(|l| l == &format!("secret {s_abc}_db_password_v1")),
        "{before_abc:?}"
    );
    let out = output_within(app.chain("4c", &ab, &format!("\"$DEPLOY\" down {ab}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every name of a.b.c starts with a.b's stack name too, and all of it is still there.
    assert_eq!(leftovers(&s_abc), before_abc);
    assert!(
        leftovers(&s_ab).iter().all(|l| l.contains(&s_abc)),
        "{:?}",
        leftovers(&s_ab)
    );
}

#[test]
fn a_service_that_never_converges_is_named_near_the_timeout() {
    if !swarm::available("a_service_that_never_converges_is_named_near_the_timeout") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t5");
    let start = Instant::now();
    // Past 15 s of convergence, so the progress line shows too (abra's steps before it
    // count against --timeout as well).
    let script = format!("\"$DEPLOY\" up {d} --recipe never-converges --timeout 20s");
    let (status, lines) = crate::support::Background::spawn(app.chain("5", &d, &script))
        .finish_within(Duration::from_secs(60));
    let took = start.elapsed();
    let err = lines.join("\n");
    assert_eq!(status.code(), Some(1), "{err}");
    let progress = format!("== deploy: {d} converging — 0/1 services ready (broken 0/1), 15s ==");
    assert!(err.contains(&progress), "{err}");
    let gave_up = format!("== deploy: {d} did not converge in ");
    assert!(err.contains(&gave_up), "{err}");
    let named = format!("not ready: {}_broken 0/1", d.replace('.', "_"));
    assert!(err.contains(&named), "{err}");
    assert!(
        err.contains("No such image"),
        "the failed task's error: {err}"
    );
    assert!(took >= Duration::from_secs(20), "gave up early: {took:?}");
    // Rejected tasks keep re-creating the stack's network for a moment after its
    // removal: teardown must still end with nothing left, and say so with 0.
    let out = output_within(app.chain("5", &d, &format!("\"$DEPLOY\" down {d}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(leftovers(&d.replace('.', "_")), Vec::<String>::new());
    assert!(
        took < Duration::from_secs(90),
        "long past the timeout: {took:?}"
    );
}

#[test]
fn docker_unreachable_is_69_and_abra_missing_is_69() {
    let mut app = App::new();
    let d = app.domain("t6");
    for script in [
        format!("\"$DEPLOY\" up {d} --recipe two-services"),
        format!("\"$DEPLOY\" down {d}"),
    ] {
        let mut cmd = app.chain("6", &d, &script);
        cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
        let out = output_within(cmd);
        assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("docker"),
            "{}",
            text(&out.stderr)
        );
    }
    if swarm::available("docker_unreachable_is_69_and_abra_missing_is_69") {
        // abra is looked for before the deploy is counted: nothing is counted.
        let script = format!(
            "\"$DEPLOY\" up {d} --recipe two-services; rc=$?; \"$DEPLOY\" count --expect 0 && exit $rc"
        );
        let mut cmd = app.chain("6", &d, &script);
        cmd.env("CCCI_ABRA", "/nonexistent/abra");
        let out = output_within(cmd);
        assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("/nonexistent/abra"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn an_invalid_domain_is_2_and_quoted() {
    let app = App::new();
    for sub in [
        &["up", "../x", "--recipe", "r"][..],
        &["down", "A.B"],
        &["status", "a..b"],
        &["count", "--domain", "x/y"],
    ] {
        let out = output_within({
            let mut c = app.deploy();
            c.args(sub);
            c
        });
        assert_eq!(out.status.code(), Some(2), "{sub:?}");
        assert!(
            text(&out.stderr).contains("invalid app domain \""),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_failing_abra_is_1_with_its_last_lines_quoted() {
    if !swarm::available("a_failing_abra_is_1_with_its_last_lines_quoted") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t7");
    let out = output_within(app.chain(
        "7",
        &d,
        &format!("\"$DEPLOY\" up {d} --recipe no-such-recipe"),
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("  > abra (test stand-in): unknown recipe no-such-recipe"),
        "{}",
        text(&out.stderr)
    );
    // --abra-arg reaches `abra app deploy` verbatim (the strict stand-in refuses it).
    let script = format!("\"$DEPLOY\" up {d} --recipe two-services --abra-arg --bogus-flag");
    let out = output_within(app.chain("7", &d, &script));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unsupported by the test stand-in: abra app deploy"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_crash_looping_service_never_counts_as_converged() {
    if !swarm::available("a_crash_looping_service_never_counts_as_converged") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t8");
    let script = format!("\"$DEPLOY\" up {d} --recipe crash-loop --timeout 14s");
    let out = output_within(app.chain("8", &d, &script));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not converge"), "{err}");
    assert!(
        err.contains("non-zero exit"),
        "the failed task's error: {err}"
    );
}

#[test]
fn a_service_that_crashes_seconds_after_it_starts_never_counts_as_converged() {
    if !swarm::available("a_service_that_crashes_seconds_after_it_starts_never_counts_as_converged")
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tc");
    let stack = d.replace('.', "_");
    // Its task reads 1/1 for 8 s, then fails: far longer than two polls apart, so only the
    // tasks' history and running time can tell. Two crashes fit in 24 s.
    let script = format!("\"$DEPLOY\" up {d} --recipe slow-crash --timeout 24s");
    let out = output_in(app.chain("c", &d, &script), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("converged in"), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} did not converge in ")),
        "{err}"
    );
    // The failing service is named with its task's error, whichever look came last.
    let named = [
        format!("not ready: {stack}_crashy 0/1"),
        format!("tasks not stable: {stack}_crashy 1/1"),
    ];
    assert!(named.iter().any(|n| err.contains(n)), "{err}");
    assert!(err.contains("non-zero exit"), "the task's error: {err}");
}

/// An abra (for `CCCI_ABRA`) whose first call of `step` (`app deploy`, ...) fails, once:
/// without running it, or (`after`) once the real abra ran it. A flag file can be removed
/// only once.
fn abra_failing_once(app: &App, step: &str, after: bool) -> std::path::PathBuf {
    let name = step.replace(' ', "-");
    let flag = app.sb.path(&format!("fail-next-{name}"));
    std::fs::write(&flag, "").unwrap();
    let wrapper = app.sb.path(&format!("abra-fails-{name}-once"));
    let real = swarm::abra();
    let run_it = match after {
        true => format!("'{}' \"$@\"; ", real.display()),
        false => String::new(),
    };
    write_executable(
        &wrapper,
        &format!(
            "#!/bin/sh\ncase \"$*\" in '{step} '*)\n  if rm '{}' 2>/dev/null; then\n    \
             {run_it}echo 'abra (test wrapper): injected failure of {step}' >&2; exit 1\n  \
             fi ;;\nesac\nexec '{}' \"$@\"\n",
            flag.display(),
            real.display()
        ),
    );
    wrapper
}

#[test]
fn a_new_run_after_a_run_that_failed_mid_deploy_recovers() {
    if !swarm::available("a_new_run_after_a_run_that_failed_mid_deploy_recovers") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("td");
    // abra that fails its first `app deploy` (after `app new` and `secret generate` ran).
    let wrapper = abra_failing_once(&app, "app deploy", false);
    let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
    let mut run1 = app.chain("d1", &d, &up);
    run1.env("CCCI_ABRA", &wrapper);
    let out = output_within(run1);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("injected failure of app deploy"), "{err}");
    // Run 1 left its app behind, as a run that exits 1 without tearing down does.
    let env = app.sb.abra_dir().join(format!("servers/default/{d}.env"));
    assert!(env.exists(), "{err}");
    // A new run of the same domain: a fresh private tree without the recipe, and the
    // .env already there, so `app new` is skipped. It must deploy and converge.
    let mut run2 = app.chain("d2", &d, &up);
    run2.env("CCCI_ABRA", &wrapper);
    let out = output_in(run2, DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} converged in ")),
        "{err}"
    );
    assert!(
        app.sb
            .runs_dir()
            .join("d2/abra/recipes/two-services/compose.yml")
            .is_file()
    );
    // Its secrets were made in run 1: nothing to generate.
    assert!(!err.contains("generating its missing secrets"), "{err}");
}

#[test]
fn a_new_run_after_a_run_that_failed_before_its_secrets_were_made_recovers() {
    // Adversary 17, F2: the .env is written by `app new`, first; a run that failed after
    // it, but before `app secret generate` made the secrets, made every later run of the
    // domain red ("secret not found"), since a .env made `up` skip both steps.
    if !swarm::available("a_new_run_after_a_run_that_failed_before_its_secrets_were_made_recovers")
    {
        return;
    }
    let mut app = App::new();
    let (a, b, c) = (app.domain("tg"), app.domain("th"), app.domain("ti"));
    let cases = [
        // `app secret generate` fails.
        (
            &a,
            "g",
            abra_failing_once(&app, "app secret generate", false),
            "injected failure of app secret generate",
        ),
        // `app new` fails, after writing the .env (and fetching into run 1's tree only).
        (
            &b,
            "h",
            abra_failing_once(&app, "app new", true),
            "injected failure of app new",
        ),
        // `app secret generate` hangs, and is killed at --timeout.
        (&c, "i", swarm::hang(), "app secret generate"),
    ];
    for (d, run, abra, failure) in cases {
        let stack = d.replace('.', "_");
        let timeout = if run == "i" { "10s" } else { "2m" };
        let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout {timeout}");
        let mut run1 = app.chain(&format!("{run}1"), d, &up);
        run1.env("CCCI_ABRA", &abra)
            .env("HANG_REAL", swarm::abra())
            .env("HANG_MARK", app.sb.path(&format!("hang-{run}.mark")))
            .env("HANG_ON", "app secret generate *");
        let out = output_within(run1);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{run}: {err}");
        assert!(err.contains(failure), "{run}: {err}");
        if run == "i" {
            assert!(err.contains(" did not finish within "), "{run}: {err}");
        }
        assert!(
            app.sb
                .abra_dir()
                .join(format!("servers/default/{d}.env"))
                .exists(),
            "{run}: {err}"
        );
        assert!(
            !leftovers(&stack).iter().any(|l| l.starts_with("secret ")),
            "{run}: {:?}",
            leftovers(&stack)
        );
        // A new run of the domain makes what run 1 left unmade, and converges.
        let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
        let out = output_in(app.chain(&format!("{run}2"), d, &up), DEPLOY_PATIENCE);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{run}: {err}");
        assert!(
            err.contains(&format!(
                "== deploy: app {d} exists; generating its missing secrets ({stack}_db_password_v1) =="
            )),
            "{run}: {err}"
        );
        assert!(
            err.contains(&format!("== deploy: {d} converged in ")),
            "{run}: {err}"
        );
    }
}

#[test]
fn status_reads_the_tree_the_other_tools_read() {
    if !swarm::available("status_reads_the_tree_the_other_tools_read") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("te");
    // The app's .env in the canonical tree (CCCI_CANONICAL_ABRA_DIR), and a HOME whose
    // own .abra knows nothing of it.
    let env = app.sb.abra_servers().join(format!("default/{d}.env"));
    std::fs::write(&env, "TYPE=two-services\n").unwrap();
    let home = app.sb.path("home");
    std::fs::create_dir_all(home.join(".abra/servers/default")).unwrap();
    let env_files = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["env_files"].clone()
    };
    // Outside a run dir: the canonical tree, as the janitor reads it.
    let mut status = app.sb.cmd("ccci-deploy");
    status
        .env_remove("ABRA_DIR")
        .env("HOME", &home)
        .args(["status", &d, "--json"]);
    let out = output_within(status);
    assert_eq!(
        env_files(&out),
        serde_json::json!([env.display().to_string()])
    );
    let mut status = app.sb.cmd("ccci-deploy");
    status
        .env_remove("ABRA_DIR")
        .env("HOME", &home)
        .args(["status", &d]);
    let out = output_within(status);
    assert!(
        text(&out.stdout).contains(&format!("  env file {}", env.display())),
        "{}",
        text(&out.stdout)
    );
    // Inside one: the run's tree (whose servers/ links to the canonical one).
    let mut status = app.sb.cmd("ccci-rundir");
    status
        .env("HOME", &home)
        .args(["--run-id", "e", "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["status", &d, "--json"]);
    let out = output_within(status);
    let in_run = app
        .sb
        .runs_dir()
        .join(format!("e/abra/servers/default/{d}.env"));
    assert_eq!(
        env_files(&out),
        serde_json::json!([in_run.display().to_string()])
    );
}

#[test]
fn outside_a_run_dir_abra_is_told_the_tree_ccci_deploy_reads() {
    if !swarm::available("outside_a_run_dir_abra_is_told_the_tree_ccci_deploy_reads") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tf");
    // A harness that counts deploys itself, with no ABRA_DIR: ccci-deploy reads the
    // canonical tree, and abra, left alone, would use $HOME/.abra (which has no server).
    let home = app.sb.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = app.sb.cmd("ccci-lock");
    cmd.env_remove("ABRA_DIR")
        .env("HOME", &home)
        .env("CCCI_ABRA", swarm::abra())
        .env("CCCI_DEPLOY_COUNT_FILE", app.sb.path("deploys"))
        .args([&d, "--"])
        .arg(crate::support::bin("ccci-deploy"))
        .args(["up", &d, "--recipe", "two-services", "--timeout", "2m"]);
    let out = output_in(cmd, DEPLOY_PATIENCE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let canonical = app.sb.abra_dir();
    assert!(canonical.join(format!("servers/default/{d}.env")).is_file());
    assert!(canonical.join("recipes/two-services/compose.yml").is_file());
    assert!(!home.join(".abra").exists());
}

#[test]
fn a_spoofed_namespace_label_claims_nothing() {
    if !swarm::available("a_spoofed_namespace_label_claims_nothing") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("t9");
    let stack = d.replace('.', "_");
    // Not labelled with the stack: the namespace only appears inside another label's
    // value, which a `k=v,k=v` reading of `Labels` would take for the real thing.
    let victim = format!("{stack}x_victim");
    app.track(&format!("{d}x"));
    let spoof = format!("note=x,com.docker.stack.namespace={stack}");
    let made = std::process::Command::new("docker")
        .args(["volume", "create", "--label", &spoof, &victim])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = output_within(app.chain("9", &d, &format!("\"$DEPLOY\" down {d}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("removed nothing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        leftovers(&format!("{stack}x")),
        [format!("volume {victim}")]
    );
}

#[test]
fn the_lock_rule_only_reads_and_wants_an_exclusive_lock() {
    let sb = Sandbox::new();
    let d = swarm::domain("ta");
    std::fs::create_dir_all(sb.lock_dir()).unwrap();
    let lockfile = sb.lockfile(&d);
    std::fs::write(&lockfile, "").unwrap();
    // fd 9 holds only a shared lock: not the app lock, and the check must not touch it
    // (a LOCK_EX|LOCK_NB probe would drop or convert it).
    let script = format!(
        "exec 9<>'{l}'; flock -s 9; CCCI_LOCK_FD=9 CCCI_LOCK_DOMAIN={d} \"$0\" down {d}; echo rc=$?; \
         flock -n -x '{l}' true; echo other=$?; \
         exec 8<>'{l}'; CCCI_LOCK_FD=8 CCCI_LOCK_DOMAIN={d} \"$0\" down {d}; echo fresh=$?",
        l = lockfile.display()
    );
    let mut cmd = crate::support::sh_with("ccci-deploy", &script);
    cmd.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
    let out = output_within(cmd);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rc=78"), "{stdout}");
    assert!(
        stdout.contains("other=1"),
        "the caller's shared lock was dropped: {stdout}"
    );
    // A descriptor on the right file that holds nothing proves nothing either.
    assert!(stdout.contains("fresh=78"), "{stdout}");
}

#[test]
fn bad_set_server_and_version_values_are_usage_errors() {
    let app = App::new();
    let d = swarm::domain("tb");
    for args in [
        vec!["up", &d, "--recipe", "r", "--set", "A=x\nB=y"],
        vec!["up", &d, "--recipe", "r", "--set", "1A=x"],
        vec!["up", &d, "--recipe", "r", "--server", "/etc"],
        vec!["up", &d, "--recipe", "r", "--server", "../x"],
        vec!["up", &d, "--recipe", "r", "--version=--chaos"],
        vec!["up", &d, "--recipe", "../r"],
        vec!["up", &d, "--recipe", "--chaos"],
        vec!["down", &d, "--server", "a/b"],
    ] {
        let out = output_within({
            let mut c = app.deploy();
            c.args(&args);
            c
        });
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A docker or abra call that hangs, and what it must do to `ccci-deploy`.
struct Hang<'a> {
    run: &'a str,
    domain: &'a str,
    script: String,
    /// The stand-in is abra (else docker).
    abra: bool,
    /// `HANG_ON` and `HANG_AFTER` of `tests/fixtures/hang`.
    on: &'a str,
    after: u32,
    /// What the error must name.
    command: String,
}

#[test]
fn a_hung_docker_or_abra_ends_up_and_down_by_their_timeout_naming_the_command() {
    // Issue 17: a `docker service ls` that hangs made `--timeout` meaningless.
    if !swarm::available(
        "a_hung_docker_or_abra_ends_up_and_down_by_their_timeout_naming_the_command",
    ) {
        return;
    }
    let mut app = App::new();
    let (a, b, c) = (app.domain("t10a"), app.domain("t10b"), app.domain("t10c"));
    let cases = [
        // The teardown's first listing.
        Hang {
            run: "10a",
            domain: &a,
            script: format!("\"$DEPLOY\" down {a} --timeout 5s"),
            abra: false,
            on: "service ls*",
            after: 0,
            command: "service ls --format {{json .}}`".into(),
        },
        // abra deploying.
        Hang {
            run: "10b",
            domain: &b,
            script: format!("\"$DEPLOY\" up {b} --recipe two-services --timeout 10s"),
            abra: true,
            on: "app deploy *",
            after: 0,
            command: format!("app deploy {b} --chaos --offline --no-converge-checks --no-input`"),
        },
        // The second convergence poll, after a real deploy and a first poll.
        Hang {
            run: "10c",
            domain: &c,
            script: format!("\"$DEPLOY\" up {c} --recipe two-services --timeout 15s"),
            abra: false,
            on: "service ls*",
            after: 1,
            command: format!(
                "service ls --filter label=com.docker.stack.namespace={}",
                c.replace('.', "_")
            ),
        },
    ];
    for case in cases {
        let mut cmd = app.chain(case.run, case.domain, &case.script);
        let (var, real) = if case.abra {
            ("CCCI_ABRA", swarm::abra())
        } else {
            ("CCCI_DOCKER", "docker".into())
        };
        let mark = app.sb.path(&format!("hang-{}.mark", case.run));
        cmd.env(var, swarm::hang())
            .env("HANG_REAL", real)
            .env("HANG_MARK", &mark)
            .env("HANG_ON", case.on)
            .env("HANG_AFTER", case.after.to_string());
        // Generous: the bound is the tool's --timeout; far past it is a hang.
        let (status, lines) =
            crate::support::Background::spawn(cmd).finish_within(Duration::from_secs(90));
        let run = case.run;
        assert_eq!(status.code(), Some(1), "{run}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("ccci-deploy: `")
                && l.contains(&case.command)
                && l.contains(" did not finish within ")
                && l.contains("— killed")),
            "{run}: {lines:?}"
        );
        let mark = std::fs::read_to_string(&mark).unwrap_or_default();
        assert!(mark.starts_with("hung "), "{run}: {mark:?}");
        for pid in mark.split_whitespace().skip(1) {
            assert!(!swarm::running(pid), "{run}: {pid} ({mark:?}) still runs");
        }
    }
}

#[test]
fn a_killed_deploy_leaves_no_child_of_abra_holding_the_domain_lock() {
    // ccci-deploy is killed (a cancelled job) while a hung abra runs: abra dies with it
    // (parent-death signal), but what abra started lives on in its own process group
    // until something sweeps it (ccci-guard does). It must not hold the domain's lock:
    // docker and abra never get the lock descriptor ccci-lock handed down.
    if !swarm::available("a_killed_deploy_leaves_no_child_of_abra_holding_the_domain_lock") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tk");
    let mark = app.sb.path("hang-k.mark");
    let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
    let mut cmd = app.chain("k1", &d, &up);
    cmd.env("CCCI_ABRA", swarm::hang())
        .env("HANG_REAL", swarm::abra())
        .env("HANG_MARK", &mark)
        .env("HANG_ON", "app deploy *");
    let bg = crate::support::Background::spawn(cmd);
    let end = std::time::Instant::now() + DEPLOY_PATIENCE;
    let hung = loop {
        let m = std::fs::read_to_string(&mark).unwrap_or_default();
        if m.starts_with("hung ") {
            break m;
        }
        assert!(std::time::Instant::now() < end, "abra never hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pids: Vec<String> = hung.split_whitespace().skip(1).map(str::to_owned).collect();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap();
    let deploy: i32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(deploy),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, lines) = bg.finish_within(DEPLOY_PATIENCE);
    assert!(!status.success(), "{lines:?}");
    // Whatever of abra's still runs, the domain is free for the next run.
    let lockfile = app.sb.lockfile(&d);
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    while std::fs::File::open(&lockfile)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    {
        let alive: Vec<&String> = pids.iter().filter(|p| swarm::running(p)).collect();
        assert!(
            std::time::Instant::now() < end,
            "the domain lock is still held by what abra left: {alive:?} of {hung:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in pids.iter().filter(|p| swarm::running(p)) {
        let _ = std::process::Command::new("kill")
            .args(["-9", p.as_str()])
            .status();
    }
}
