//! A new run of a domain recovers after a run that failed part way through its deploy.

use crate::support::{DEPLOY_PATIENCE, output_in, output_within, stack, text, write_executable};
use crate::swarm::{self, App, leftovers};

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
    let env = app.env_file(&d);
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
        let stack = stack(d);
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
        assert!(app.env_file(d).exists(), "{run}: {err}");
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
