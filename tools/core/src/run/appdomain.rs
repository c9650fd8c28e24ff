//! The run's app domain, derived from the build's parameters.
//!
//! cc-ci's bridge starts a build with `RECIPE`, `PR` and `REF` and no domain; the domain
//! must exist before the app lock is taken, so ccci derives it (`ccci-rundir domain`) in
//! the shape cc-ci uses: `<recipe[:4]>-<6 hex>.<suffix>`, e.g. `immi-ad3e33.ci.commoninternet.net`.
//! It is that short so that swarm secret names (`<stack>_<secret>_<version>`) stay
//! within docker's 64 characters.
//!
//! The hash cc-ci uses is not public; ours is documented so anyone can recompute it:
//! the first 6 hex digits of SHA-256 over `<recipe>\n<pr>\n<ref>` (the parameters as
//! given, newline-separated — no parameter may hold a newline, so the input is
//! unambiguous). The same recipe, PR and ref always give the same domain (two `!testme`
//! of one commit serialize on its lock); a new push is a new ref and a new app. A run's
//! cold dependency is derived the same way with its own recipe name and the run's PR and
//! ref, so it is unique to the run, and a dependency cycle back to the run's own recipe
//! names the run's own app.
//!
//! The prefix is the recipe's first 4 letters or digits (lowercased; `-` and `_` are
//! skipped, so `my-app` gives `myap`): cc-ci's run-app pattern allows only `[a-z0-9]`
//! there.

use sha2::{Digest, Sha256};

use crate::domain::Domain;

/// How many hex digits of the hash a domain carries.
const HEX: usize = 6;
/// How many characters of the recipe name lead the domain.
const PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error(
        "{name} is not set: cc-ci's bridge passes it as a build parameter (set it, or pass --{flag})"
    )]
    Missing {
        name: &'static str,
        flag: &'static str,
    },
    #[error("{name} {value:?} is not plain text (control characters or a newline)")]
    NotPlain { name: &'static str, value: String },
    #[error("recipe {0:?} has no letter or digit to start the domain with")]
    NoPrefix(String),
    #[error("the derived domain is not a valid domain: {0}")]
    Invalid(String),
}

/// The build parameters a domain is derived from.
#[derive(Clone, Debug)]
pub struct BuildParams<'a> {
    pub recipe: &'a str,
    pub pr: &'a str,
    pub git_ref: &'a str,
}

/// `<recipe[:4]>-<6 hex>.<suffix>` (see the module comment).
pub fn derive(params: &BuildParams<'_>, suffix: &str) -> Result<Domain, DeriveError> {
    let fields = [
        ("RECIPE", "recipe", params.recipe),
        ("PR", "pr", params.pr),
        ("REF", "ref", params.git_ref),
    ];
    for (name, flag, value) in fields {
        if value.is_empty() {
            return Err(DeriveError::Missing { name, flag });
        }
        if value.chars().any(char::is_control) {
            return Err(DeriveError::NotPlain {
                name,
                value: value.to_owned(),
            });
        }
    }
    let prefix: String = params
        .recipe
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(PREFIX)
        .collect();
    if prefix.is_empty() {
        return Err(DeriveError::NoPrefix(params.recipe.to_owned()));
    }
    let digest = Sha256::digest(format!(
        "{}\n{}\n{}",
        params.recipe, params.pr, params.git_ref
    ));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let domain = format!("{prefix}-{}.{}", &hex[..HEX], suffix.trim_matches('.'));
    Domain::parse(&domain).map_err(|e| DeriveError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(recipe: &'a str, pr: &'a str, git_ref: &'a str) -> BuildParams<'a> {
        BuildParams {
            recipe,
            pr,
            git_ref,
        }
    }

    #[test]
    fn the_documented_hash_and_shape() {
        // printf 'drone\n1\n049438e1cb47' | sha256sum
        let d = derive(
            &params("drone", "1", "049438e1cb47"),
            "ci.commoninternet.net",
        )
        .unwrap();
        assert_eq!(d.as_str(), "dron-d16011.ci.commoninternet.net");
        let again = derive(
            &params("drone", "1", "049438e1cb47"),
            "ci.commoninternet.net",
        )
        .unwrap();
        assert_eq!(d, again);
        let other_ref = derive(
            &params("drone", "1", "149438e1cb47"),
            "ci.commoninternet.net",
        )
        .unwrap();
        assert_ne!(d, other_ref);
    }

    #[test]
    fn the_prefix_is_the_first_four_letters_or_digits() {
        let prefix = |recipe| {
            derive(&params(recipe, "7", "abc"), "ci.example.org")
                .unwrap()
                .as_str()
                .split('-')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(prefix("custom-html"), "cust");
        assert_eq!(prefix("n8n"), "n8n");
        assert_eq!(prefix("my-app"), "myap");
        assert_eq!(prefix("Immich"), "immi");
    }

    #[test]
    fn missing_or_odd_parameters_are_refused_by_name() {
        let err = derive(&params("drone", "", "abc"), "s")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("PR is not set"), "{err}");
        let err = derive(&params("drone", "1", "a\nb"), "s")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("REF "), "{err}");
        assert!(derive(&params("--", "1", "a"), "s").is_err());
        assert!(derive(&params("drone", "1", "a"), "bad_suffix").is_err());
    }
}
