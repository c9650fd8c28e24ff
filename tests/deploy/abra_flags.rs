//! ccci-deploy runs abra as the cc-ci harness does (docs/deploy.md, "abra as cc-ci runs
//! it"), and the stand-in holds it to what those flags mean: offline (the mirror needs
//! credentials), chaos (no release checked out over the tree), the force path over a
//! deployed stack, and abra's own convergence wait, which must not decide.

use std::path::PathBuf;

use crate::support::{DEPLOY_PATIENCE, output_in, output_within, text, write_executable};
use crate::swarm::{self, App, leftovers};

/// An abra (for `CCCI_ABRA`) that drops `flag` from every call and runs the stand-in:
/// ccci-deploy with that flag broken.
fn abra_without(app: &App, flag: &str) -> PathBuf {
    let wrapper = app.sb.path(&format!("abra-without{flag}"));
    write_executable(
        &wrapper,
        &format!(
            "#!/bin/sh\nfor a; do shift; [ \"$a\" = '{flag}' ] || set -- \"$@\" \"$a\"; done\n\
             exec '{}' \"$@\"\n",
            swarm::abra().display()
        ),
    );
    wrapper
}

#[test]
fn up_runs_abra_offline_and_chaos_and_without_either_the_stand_in_fails_it() {
    if !swarm::available("up_runs_abra_offline_and_chaos_and_without_either_the_stand_in_fails_it")
    {
        return;
    }
    let mut app = App::new();
    let d = app.domain("fa");
    let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
    let out = output_in(app.chain("fa", &d, &up), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "== deploy: app deploy {d} --chaos --offline --no-converge-checks --no-input =="
        )),
        "{err}"
    );
    // The same deploy with one of the flags dropped: the stand-in fails it as abra and the
    // host's mirror would, at the first call (the recipe fetch, or `app new`).
    for (flag, failure) in [
        (
            "--offline",
            "fetching the recipe from the recipe mirror failed: authentication required",
        ),
        (
            "--chaos",
            "two-services has no published versions to check out",
        ),
    ] {
        let d = app.domain("fb");
        let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 1m");
        let mut cmd = app.chain("fb", &d, &up);
        cmd.env("CCCI_ABRA", abra_without(&app, flag));
        let out = output_within(cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(&format!("  > abra (test stand-in): {failure}")),
            "{flag}: {err}"
        );
        assert!(leftovers(&d.replace('.', "_")).is_empty(), "{flag}");
    }
}

#[test]
fn a_deployed_app_is_upgraded_in_place_through_the_force_path() {
    if !swarm::available("a_deployed_app_is_upgraded_in_place_through_the_force_path") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("fc");
    // Deployed from the tree, then redeployed at a pinned version (no --chaos, which abra
    // refuses with a version): only --force lets abra deploy over the deployed stack.
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --timeout 2m && \
         \"$DEPLOY\" up {d} --recipe two-services --version 1.0.0 --set APP_REPLICAS=1 \
         --timeout 2m --stable-for 2s"
    );
    let out = output_in(app.chain("fc", &d, &script), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "== deploy: {d} is deployed; redeploying it in place =="
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "== deploy: app deploy {d} 1.0.0 --offline --no-converge-checks --force --no-input =="
        )),
        "{err}"
    );
    let converged = format!("== deploy: {d} converged in ");
    assert_eq!(err.matches(&converged).count(), 2, "{err}");
    let stack = d.replace('.', "_");
    let replicas = std::process::Command::new("docker")
        .args(["service", "ls", "--filter"])
        .arg(format!("name={stack}_app"))
        .args(["--format", "{{.Replicas}}"])
        .output()
        .unwrap();
    assert_eq!(
        text(&replicas.stdout).trim(),
        "1/1",
        "the upgrade took effect"
    );
    // Without --force, abra refuses: the stand-in says so as abra does.
    let up = format!("\"$DEPLOY\" up {d} --recipe two-services --version 1.0.0 --timeout 1m");
    let mut cmd = app.chain("fd", &d, &up);
    cmd.env("CCCI_ABRA", abra_without(&app, "--force"));
    let out = output_within(cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "  > abra (test stand-in): {d} is already deployed"
        )),
        "{err}"
    );
}

#[test]
fn abras_own_wait_does_not_decide_ccci_deploys_timeout_does() {
    if !swarm::available("abras_own_wait_does_not_decide_ccci_deploys_timeout_does") {
        return;
    }
    let mut app = App::new();
    // slow-start converges some 5 s after it is deployed: past the TIMEOUT of 2 s the
    // app's .env gives abra, well within ccci-deploy's --timeout.
    let up = |d: &str| {
        format!(
            "\"$DEPLOY\" up {d} --recipe slow-start --set TIMEOUT=2 --timeout 1m --stable-for 0s"
        )
    };
    let d = app.domain("fe");
    let out = output_in(app.chain("fe", &d, &up(&d)), DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("== deploy: {d} converged in ")),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
    // Had abra been left to wait (no --no-converge-checks), its TIMEOUT would have failed
    // the very same deploy.
    let d = app.domain("ff");
    let mut cmd = app.chain("ff", &d, &up(&d));
    cmd.env("CCCI_ABRA", abra_without(&app, "--no-converge-checks"));
    let out = output_in(cmd, DEPLOY_PATIENCE);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "  > abra (test stand-in): {d}: deploy timed out after 2s (TIMEOUT)"
        )),
        "{err}"
    );
}

#[test]
fn a_domain_too_long_for_its_recipe_is_refused_before_anything_is_created() {
    if !swarm::available("a_domain_too_long_for_its_recipe_is_refused_before_anything_is_created") {
        return;
    }
    let mut app = App::new();
    let short = swarm::domain("fg");
    // 60 characters: `<stack>_app` is 64 (> 63), `<stack>_db_password_v1` 75 (> 64);
    // `<stack>_db` is 63, which swarm takes.
    let d = format!("{}.{short}", "x".repeat(59 - short.len()));
    assert_eq!(d.len(), 60);
    app.track(&d);
    let stack = d.replace('.', "_");
    let script = format!(
        "\"$DEPLOY\" up {d} --recipe two-services --timeout 1m; rc=$?; \
         \"$DEPLOY\" count --expect 0 >/dev/null && exit $rc"
    );
    let out = output_within(app.chain("fg", &d, &script));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "ccci-deploy: {d} is too long for recipe two-services: its stack {stack} would make \
             names past docker's limits (63 characters for a service, 64 for a secret)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "service name {stack}_app is 64 characters, docker allows 63"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "secret name {stack}_db_password_v1 is 75 characters, docker allows 64"
        )),
        "{err}"
    );
    assert!(!err.contains(&format!("{stack}_db is")), "{err}");
    // Nothing of the app: no .env, nothing on the swarm, no deploy counted (the count
    // check above passed).
    assert!(
        !app.sb
            .abra_dir()
            .join(format!("servers/default/{d}.env"))
            .exists()
    );
    assert_eq!(leftovers(&stack), Vec::<String>::new());
}

#[test]
fn the_stand_in_reads_flags_where_abras_parser_does_and_no_others() {
    // No swarm needed: `app new` and these refusals touch only the abra tree.
    let sb = crate::support::Sandbox::new();
    std::fs::create_dir_all(sb.abra_servers().join("default")).unwrap();
    let abra = |args: &str| {
        let out = std::process::Command::new(swarm::abra())
            .args(args.split_whitespace())
            .env("ABRA_DIR", sb.abra_dir())
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    // As cc-ci writes them and as ccci-deploy does: short or long, combined, `=`, global
    // flags before the command's name, a command's own before or after its arguments.
    for (domain, line) in [
        ("a.b", "-n app new two-services -s default -D a.b -C -o"),
        (
            "a.c",
            "app new two-services --server=default --domain=a.c --chaos --offline --no-input",
        ),
        ("a.d", "-o app new -Cn two-services -sdefault --domain a.d"),
        (
            "a.e",
            "app new two-services --server default -d --domain a.e -Con",
        ),
    ] {
        let (code, err) = abra(line);
        assert_eq!(code, Some(0), "{line}: {err}");
        assert!(
            sb.abra_servers()
                .join(format!("default/{domain}.env"))
                .is_file(),
            "{line}"
        );
    }
    for (line, code, failure) in [
        // A command's own flag before its name: cobra does not read it there.
        (
            "-C app new two-services -s default -D a.f -o -n",
            2,
            "unsupported by the test stand-in",
        ),
        // A real abra flag ccci-deploy does not use.
        (
            "app new two-services -s default -D a.f -C -o -n --secrets",
            2,
            "unsupported by the test stand-in",
        ),
        (
            "app new two-services -s default -D a.f -C -n",
            1,
            "authentication required",
        ),
        (
            "app new two-services -s default -D a.f -o -n",
            1,
            "no published versions",
        ),
        (
            "app deploy a.b 1.0.0 -C -o -n",
            1,
            "cannot use [version] and --chaos together",
        ),
        ("app deploy a.b -c -f -C -o", 2, "without -n/--no-input"),
    ] {
        let (got, err) = abra(line);
        assert_eq!(got, Some(code), "{line}: {err}");
        assert!(err.contains(failure), "{line}: {err}");
    }
    assert!(!sb.abra_servers().join("default/a.f.env").exists());
}
