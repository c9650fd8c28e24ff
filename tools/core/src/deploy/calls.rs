//! The abra command lines `ccci-deploy up` runs, flagged as the cc-ci harness runs abra
//! (docs/deploy.md, "abra as cc-ci runs it").
//!
//! Every call reads the recipe, so every call is offline (`--offline`: the host's recipe
//! mirror needs credentials abra does not have) and non-interactive (`--no-input`), and
//! every call that would otherwise check out the recipe's latest release over the tree
//! the harness checked out is `--chaos`. `app deploy` never waits for convergence itself
//! (`--no-converge-checks`): ccci-deploy's own wait, bounded by its `--timeout`, decides
//! — abra's wait would fail after the app's `TIMEOUT` (300 s unless the .env says
//! otherwise), long before a slow recipe's `--timeout`.
//!
//! Flags come after the command's name and its arguments: abra's parser (cobra) reads a
//! command's own flags (`--chaos`, `--force`, ...) only after the command's name, and its
//! global ones (`--offline`, `--no-input`) anywhere; after the arguments both are read.

/// abra's global flag: do not update recipes or the catalogue from their remote.
pub const OFFLINE: &str = "--offline";
/// abra's global flag: never prompt.
pub const NO_INPUT: &str = "--no-input";
/// Use the recipe's checked-out tree as it is (no release checked out over it).
pub const CHAOS: &str = "--chaos";
/// `app deploy`: do not wait for convergence (ccci-deploy waits, with its own timeout).
pub const NO_CONVERGE_CHECKS: &str = "--no-converge-checks";
/// `app deploy`: redeploy an app whose stack is already deployed (abra refuses without
/// it, or `--chaos`).
pub const FORCE: &str = "--force";

fn line(words: &[&str], flags: &[&str]) -> Vec<String> {
    words.iter().chain(flags).map(|s| (*s).to_owned()).collect()
}

/// `abra recipe fetch <recipe>`: into the tree, when it is not there. Not `--chaos`: it
/// checks nothing out (and `recipe fetch` has no such flag).
pub fn recipe_fetch(recipe: &str) -> Vec<String> {
    line(&["recipe", "fetch", recipe], &[OFFLINE, NO_INPUT])
}

/// `abra app new <recipe> --server S --domain D`: writes the app's .env.
pub fn app_new(recipe: &str, server: &str, domain: &str) -> Vec<String> {
    line(
        &["app", "new", recipe, "--server", server, "--domain", domain],
        &[CHAOS, OFFLINE, NO_INPUT],
    )
}

/// `abra app secret generate <D> --all`: the secrets the recipe declares and the swarm
/// lacks.
pub fn secret_generate(domain: &str) -> Vec<String> {
    line(
        &["app", "secret", "generate", domain, "--all"],
        &[CHAOS, OFFLINE, NO_INPUT],
    )
}

/// What `app deploy` deploys.
pub enum Deploy<'a> {
    /// The checked-out tree, as it is (`--chaos`).
    Tree,
    /// This version of the recipe, which abra checks out (abra refuses a version with
    /// `--chaos`).
    Version(&'a str),
}

/// `abra app deploy <D> [<version>]`; `redeploy` when the app's stack is already
/// deployed (the in-place upgrade: `--force`). `extra` (`--abra-arg`) comes last.
pub fn app_deploy(
    domain: &str,
    what: &Deploy<'_>,
    redeploy: bool,
    extra: &[String],
) -> Vec<String> {
    let mut words = vec!["app", "deploy", domain];
    let mut flags = Vec::new();
    match what {
        Deploy::Tree => flags.push(CHAOS),
        Deploy::Version(v) => words.push(v),
    }
    flags.extend([OFFLINE, NO_CONVERGE_CHECKS]);
    if redeploy {
        flags.push(FORCE);
    }
    flags.push(NO_INPUT);
    let mut argv = line(&words, &flags);
    argv.extend(extra.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_lines_are_offline_unwaited_and_forced_only_when_deployed() {
        assert_eq!(
            app_deploy("a.b", &Deploy::Tree, false, &[]).join(" "),
            "app deploy a.b --chaos --offline --no-converge-checks --no-input"
        );
        assert_eq!(
            app_deploy("a.b", &Deploy::Version("1.2.0+3"), true, &["-d".into()]).join(" "),
            "app deploy a.b 1.2.0+3 --offline --no-converge-checks --force --no-input -d"
        );
        assert_eq!(
            app_new("r", "default", "a.b").join(" "),
            "app new r --server default --domain a.b --chaos --offline --no-input"
        );
    }
}
