//! Exit statuses for bad input and a failing environment: usage errors (2), docker or abra
//! unreachable (69), abra failing (1, its last lines quoted).

use crate::support::{output_within, text};
use crate::swarm::{self, App};

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
