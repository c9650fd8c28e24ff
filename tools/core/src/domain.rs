//! App domains and their swarm stack names.
//!
//! A domain ends up in a lockfile's path and in docker's argv, so it is validated before
//! it touches either: a DNS name in lowercase (letters, digits, `-`, `.`; labels of 1–63
//! characters that do not start or end with `-`; at most 240 characters). That rules out
//! `/`, `..` as a path component, NUL, and option-like leading dashes by construction.
//!
//! DNS allows 253 characters, but the lockfile `cc-ci-app-<domain>.lock` must fit the
//! 255-byte file name limit of Linux filesystems: a longer domain would validate and
//! then fail with the OS's "File name too long" halfway through a run.

use std::fmt;

/// 255 bytes of file name less `cc-ci-app-` and `.lock`.
const MAX_LEN: usize = 240;
const MAX_LABEL: usize = 63;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid app domain {quoted}: {reason}")]
pub struct DomainError {
    quoted: String,
    reason: &'static str,
}

impl Domain {
    pub fn parse(input: &str) -> Result<Domain, DomainError> {
        let fail = |reason| DomainError {
            quoted: format!("{input:?}"),
            reason,
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        if input.len() > MAX_LEN {
            return Err(fail(
                "longer than 240 characters (its lockfile name cc-ci-app-<domain>.lock must fit the 255-byte file name limit)",
            ));
        }
        if let Some(bad) = input
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(fail(if bad.is_ascii_uppercase() {
                "uppercase letters are not allowed (domains are lowercase)"
            } else {
                "only lowercase letters, digits, '-' and '.' are allowed"
            }));
        }
        for label in input.split('.') {
            if label.is_empty() {
                return Err(fail("empty label (leading, trailing or doubled '.')"));
            }
            if label.len() > MAX_LABEL {
                return Err(fail("a label is longer than 63 characters"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(fail("a label starts or ends with '-'"));
            }
        }
        Ok(Domain(input.to_owned()))
    }

    /// As [`Domain::parse`], for an argument that may not even be UTF-8.
    pub fn parse_os(input: &std::ffi::OsStr) -> Result<Domain, DomainError> {
        match input.to_str() {
            Some(s) => Domain::parse(s),
            None => Err(DomainError {
                quoted: format!("{input:?}"),
                reason: "not valid UTF-8",
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The swarm stack name abra uses: every `.` becomes `_`.
    pub fn stack_name(&self) -> String {
        self.0.replace('.', "_")
    }

    /// The domain of a stack name. Exact, because a domain never contains `_`; a stack
    /// name that maps to no valid domain (not one of ours) gives `None`.
    pub fn from_stack_name(stack: &str) -> Option<Domain> {
        Domain::parse(&stack.replace('_', ".")).ok()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_app_domains() {
        for ok in [
            "immi-ad3e33.ci.example.org",
            "a",
            "a.b",
            "warm-immich.ci.example.org",
            "0x.1-2.c",
            &"a".repeat(63),
            &format!(
                "{}.{}.{}.{}",
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(48)
            ),
        ] {
            assert_eq!(Domain::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_and_quotes_what_is_not_a_domain() {
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert_eq!(long.len(), 254);
        for bad in [
            "",
            "../x",
            "a/b",
            "A.B",
            "UPPER.case",
            "a..b",
            "-a.b",
            "a-.b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "a\0b",
            "é.fr",
            &"a".repeat(64),
            &long,
            &"x".repeat(300),
        ] {
            let err = Domain::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let err = Domain::parse_os(std::ffi::OsStr::from_bytes(b"a\xffb")).unwrap_err();
        assert!(err.to_string().contains("UTF-8"));
    }

    #[test]
    fn stack_name_maps_both_ways() {
        let d = Domain::parse("immi-ad3e33.ci.example.org").unwrap();
        assert_eq!(d.stack_name(), "immi-ad3e33_ci_example_org");
        assert_eq!(Domain::from_stack_name(&d.stack_name()), Some(d));
        assert_eq!(Domain::from_stack_name("a_b_c").unwrap().as_str(), "a.b.c");
        assert_eq!(Domain::from_stack_name("Not_Ours"), None);
        assert_eq!(Domain::from_stack_name("a__b"), None);
    }
}
