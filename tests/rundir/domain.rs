//! `ccci-rundir domain`: the run's app domain from cc-ci's build parameters.

use predicates::prelude::*;

use crate::support::{Sandbox, sh_with};

#[test]
fn the_domain_is_derived_from_recipe_pr_and_ref_as_documented() {
    let sb = Sandbox::new();
    // printf 'drone\n1\n049438e1cb47' | sha256sum → d16011…; docs/rundir.md says so.
    sb.assert("ccci-rundir")
        .args(["domain"])
        .env("RECIPE", "drone")
        .env("PR", "1")
        .env("REF", "049438e1cb47")
        .assert()
        .success()
        .stdout("dron-d16011.ci.commoninternet.net\n");
    // A dependency of the same run: its own recipe, the run's PR and ref.
    let dep = sb
        .assert("ccci-rundir")
        .args(["domain", "--recipe", "keycloak"])
        .env("RECIPE", "drone")
        .env("PR", "1")
        .env("REF", "049438e1cb47")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let dep = String::from_utf8(dep).unwrap();
    assert!(
        dep.starts_with("keyc-") && dep.ends_with(".ci.commoninternet.net\n"),
        "{dep}"
    );
}

#[test]
fn a_missing_parameter_or_a_domain_the_janitor_would_not_know_is_125() {
    let sb = Sandbox::new();
    sb.assert("ccci-rundir")
        .args(["domain", "--recipe", "drone", "--ref", "abc"])
        .assert()
        .code(125)
        .stdout("")
        .stderr(predicate::str::contains("PR is not set"));
    sb.assert("ccci-rundir")
        .args(["domain", "--recipe", "drone", "--pr", "1", "--ref", "abc"])
        .args(["--suffix", "ci.example.org"])
        .env("CCCI_RUN_APP_RE", r"\.ci\.commoninternet\.net$")
        .assert()
        .code(125)
        .stdout("")
        .stderr(predicate::str::contains(
            "does not match the run-app pattern",
        ));
}

#[test]
fn under_sh_e_a_failed_derivation_stops_the_step() {
    // The step's way (.drone.yml): a plain assignment keeps the command's status.
    let step =
        "CCCI_DOMAIN=$(\"$0\" domain); export CCCI_DOMAIN; echo \"went on with '$CCCI_DOMAIN'\"";
    let out = sh_with("ccci-rundir", &format!("set -e; {step}"))
        .env("RECIPE", "drone")
        .env("REF", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // What the step must not do: `export X=$(...)` has export's status, and goes on.
    let out = sh_with(
        "ccci-rundir",
        "set -e; export CCCI_DOMAIN=$(\"$0\" domain); echo \"went on with '$CCCI_DOMAIN'\"",
    )
    .env("RECIPE", "drone")
    .env("REF", "abc")
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "went on with ''\n");
}
