//! `ccci-deploy`'s values checked before they reach a path or abra's argv: `--set`,
//! `--server`, `--recipe`, `--version`.

/// Parse `--set KEY=VALUE`: KEY a shell-style name, VALUE on one line.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    let name = |k: &str| {
        k.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match s.split_once('=') {
        Some((k, v)) if name(k) && !v.contains(['\n', '\r', '\0']) => {
            Ok((k.to_owned(), v.to_owned()))
        }
        Some((k, _)) if name(k) => Err(format!("the value of {k} must be one line, got {s:?}")),
        _ => Err(format!(
            "expected KEY=VALUE with KEY of letters, digits and _ (not first a digit), got {s:?}"
        )),
    }
}

/// Refuse a server name that is not one path component (`--server /etc`, `..`).
pub fn parse_server(s: &str) -> Result<String, String> {
    let ok = is_plain_name(s) && s != "." && s != "..";
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid server name {s:?}: letters, digits, '.', '_', '-'"
        ))
    }
}

/// 1–253 of letters, digits, `.`, `_`, `-`: what a server or recipe name may be made of.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Refuse a recipe name that is not one path component: it names a directory of the
/// abra tree (`recipes/<recipe>`), and abra would read `-x` as an option.
pub fn parse_recipe(s: &str) -> Result<String, String> {
    let ok = is_plain_name(s) && !s.starts_with(['-', '.']);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid recipe name {s:?}: letters, digits, '.', '_', '-', not first '.' or '-'"
        ))
    }
}

/// Refuse a version that abra would read as an option.
pub fn parse_version(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with('-') {
        Err(format!("invalid version {s:?}"))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_server_recipe_and_version_values_are_checked() {
        for bad in ["1A=x", "A=x\nB=y", "A=x\ry"] {
            assert!(parse_set(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_server("../x").is_err()
                && parse_server("/etc").is_err()
                && parse_server("").is_err()
        );
        assert_eq!(parse_server("default").unwrap(), "default");
        assert_eq!(parse_recipe("two-services").unwrap(), "two-services");
        for bad in ["", ".", "..", "../x", "a/b", "-x", ".hidden"] {
            assert!(parse_recipe(bad).is_err(), "{bad:?}");
        }
        assert!(parse_version("--chaos").is_err());
        assert!(parse_set("=x").is_err());
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("A B=x").is_err());
    }
}
