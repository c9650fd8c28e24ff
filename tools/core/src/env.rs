//! Every environment variable the tools read or set, in one table
//! (`docs/environment.md`), used as `#[arg(env = EnvVars::X)]` so a name is never typed
//! twice.

pub struct EnvVars;

impl EnvVars {
    /// Directory of app lockfiles (lock, deploy, janitor).
    pub const CCCI_APP_LOCK_DIR: &'static str = "CCCI_APP_LOCK_DIR";
    /// While a host switches from the old layer: its lock dir, whose lockfiles ccci also
    /// holds and honours (lock, janitor; `lock/legacy.rs`). Unset: off.
    pub const CCCI_LEGACY_LOCK_DIR: &'static str = "CCCI_LEGACY_LOCK_DIR";
    /// How long `ccci-lock` waits for a held lock before giving up.
    pub const CCCI_LOCK_WAIT: &'static str = "CCCI_LOCK_WAIT";
    /// Parent of the per-run directories (rundir).
    pub const CCCI_RUNS_DIR: &'static str = "CCCI_RUNS_DIR";
    /// The host's shared abra tree (rundir, janitor; deploy outside a run dir).
    pub const CCCI_CANONICAL_ABRA_DIR: &'static str = "CCCI_CANONICAL_ABRA_DIR";
    /// This run's id (rundir, lock).
    pub const CCCI_RUN_ID: &'static str = "CCCI_RUN_ID";
    /// Drone's build number: the run id when `CCCI_RUN_ID` is not set.
    pub const DRONE_BUILD_NUMBER: &'static str = "DRONE_BUILD_NUMBER";
    /// The guard's deadline and grace period.
    pub const CCCI_DEADLINE: &'static str = "CCCI_DEADLINE";
    pub const CCCI_GRACE: &'static str = "CCCI_GRACE";
    /// Where the guard writes its JSON report.
    pub const CCCI_GUARD_REPORT: &'static str = "CCCI_GUARD_REPORT";
    /// The janitor's allowlist and denylist of app domains.
    pub const CCCI_RUN_APP_RE: &'static str = "CCCI_RUN_APP_RE";
    pub const CCCI_PROTECT_RE: &'static str = "CCCI_PROTECT_RE";
    /// cc-ci's build parameters (the comment bridge sets them on a custom build): the
    /// run's app domain is derived from them (`ccci-rundir domain`).
    pub const RECIPE: &'static str = "RECIPE";
    pub const PR: &'static str = "PR";
    pub const REF: &'static str = "REF";
    /// What follows `<recipe[:4]>-<6 hex>.` in a derived domain.
    pub const CCCI_DOMAIN_SUFFIX: &'static str = "CCCI_DOMAIN_SUFFIX";
    /// The run's app domain, as the Drone step sets it for the harness.
    pub const CCCI_DOMAIN: &'static str = "CCCI_DOMAIN";
    /// The docker and abra executables (deploy, janitor).
    pub const CCCI_DOCKER: &'static str = "CCCI_DOCKER";
    pub const CCCI_ABRA: &'static str = "CCCI_ABRA";

    /// Set by `ccci-rundir` for the command it runs.
    pub const ABRA_DIR: &'static str = "ABRA_DIR";
    pub const CCCI_RUN_DIR: &'static str = "CCCI_RUN_DIR";
    pub const CCCI_STATE_DIR: &'static str = "CCCI_STATE_DIR";
    pub const CCCI_DEPLOY_COUNT_FILE: &'static str = "CCCI_DEPLOY_COUNT_FILE";
    pub const CCCI_OP_STATE_FILE: &'static str = "CCCI_OP_STATE_FILE";
    pub const CCCI_DEPS_FILE: &'static str = "CCCI_DEPS_FILE";
    pub const CCCI_DEPSKIP_FILE: &'static str = "CCCI_DEPSKIP_FILE";

    /// Set by `ccci-lock` for the command it runs: the inherited descriptor that holds
    /// the lock, the lockfile's path and the domain.
    pub const CCCI_LOCK_FD: &'static str = "CCCI_LOCK_FD";
    pub const CCCI_LOCK_FILE: &'static str = "CCCI_LOCK_FILE";
    pub const CCCI_LOCK_DOMAIN: &'static str = "CCCI_LOCK_DOMAIN";
}

/// Defaults shared by every tool that reads the same variable.
pub mod defaults {
    pub const APP_LOCK_DIR: &str = "/run/lock/cc-ci";
    pub const RUNS_DIR: &str = "/var/lib/cc-ci-runs";
    /// The janitor's allowlist and denylist (`CCCI_RUN_APP_RE`, `CCCI_PROTECT_RE`).
    /// The allowlist is cc-ci's own pattern of run domains, exactly.
    pub const RUN_APP_RE: &str = r"^[a-z0-9]{1,4}-[0-9a-f]{6}\.ci\.commoninternet\.net$";
    pub const PROTECT_RE: &str = "^warm-";
    /// cc-ci's run apps live under this domain.
    pub const DOMAIN_SUFFIX: &str = "ci.commoninternet.net";
}

/// The host's canonical abra tree: `given` (from `--abra-dir` or, through clap's `env =`,
/// `CCCI_CANONICAL_ABRA_DIR`), else `$HOME/.abra`; an error naming the variable when
/// there is no `HOME` either.
pub fn canonical_abra_dir(given: Option<std::path::PathBuf>) -> Result<std::path::PathBuf, String> {
    given
        .or_else(|| non_empty("HOME").map(|home| std::path::PathBuf::from(home).join(".abra")))
        .ok_or_else(|| {
            format!(
                "HOME is not set: set {} to the host's abra tree",
                EnvVars::CCCI_CANONICAL_ABRA_DIR
            )
        })
}

/// As [`canonical_abra_dir`], for a tool without `--abra-dir` (ccci-deploy): the one
/// place `CCCI_CANONICAL_ABRA_DIR` is read by hand.
pub fn canonical_abra_dir_from_env() -> Result<std::path::PathBuf, String> {
    canonical_abra_dir(non_empty(EnvVars::CCCI_CANONICAL_ABRA_DIR).map(Into::into))
}

/// The value of `name`, with an empty value counted as unset (a Drone step that writes
/// `CCCI_RUN_ID=` means "none", not "the empty id").
pub fn non_empty(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    /// docs/environment.md is written by hand; this holds it and [`super::EnvVars`]
    /// together: every variable named here is in the docs, every `CCCI_*` the docs name is
    /// here, each constant's value is its own name, and the shared defaults are the ones
    /// the docs give.
    #[test]
    fn docs_environment_md_names_exactly_these_variables() {
        let source = include_str!("env.rs");
        let docs = include_str!("../../../docs/environment.md");
        let mut names = Vec::new();
        for line in source.lines() {
            let Some(rest) = line.trim().strip_prefix("pub const ") else {
                continue;
            };
            let Some((name, value)) = rest.split_once(": &'static str = ") else {
                continue;
            };
            assert_eq!(
                value,
                format!("\"{name}\";"),
                "{name}'s value is not its name"
            );
            names.push(name.to_owned());
        }
        assert!(names.len() > 20, "{names:?}");
        for name in &names {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/environment.md"
            );
        }
        for word in docs.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("CCCI_") && word.len() > 5 {
                assert!(
                    names.iter().any(|n| n == word),
                    "docs/environment.md names {word}, which env.rs does not"
                );
            }
        }
        use super::defaults::{APP_LOCK_DIR, PROTECT_RE, RUN_APP_RE, RUNS_DIR};
        for default in [APP_LOCK_DIR, RUNS_DIR, RUN_APP_RE, PROTECT_RE] {
            assert!(docs.contains(&format!("`{default}`")), "{default}");
        }
    }

    #[test]
    fn the_default_run_app_pattern_is_cc_cis_exactly() {
        let re = regex::Regex::new(super::defaults::RUN_APP_RE).unwrap();
        for (domain, run_app) in [
            ("immi-ad3e33.ci.commoninternet.net", true),
            ("a-000000.ci.commoninternet.net", true),
            ("immi-ad3e33.ci.example.org", false),
            ("immi-ad3e33.ci.commoninternet.net.example.org", false),
            ("immi-ad3e33xci.commoninternet.net", false),
            ("immich-ad3e33.ci.commoninternet.net", false),
            ("warm-immich.ci.commoninternet.net", false),
        ] {
            assert_eq!(re.is_match(domain), run_app, "{domain}");
        }
    }
}
