//! Durations as every tool takes them: `90s`, `25m`, `1h`, `1h30m`, `7d`, `500ms`, or a
//! bare number of seconds with an optional fraction (`0.5`).
//!
//! Units must come largest first and at most once each (`1h30m`, never `30m1h`), so a
//! typo is an error rather than a surprise. Whether `0` means "none" is the option's
//! business, not the parser's.

use std::time::Duration;

/// The longest duration accepted: ten years. Beyond it is a typo, and it keeps every sum
/// far from overflow.
const MAX_SECS: f64 = 10.0 * 365.0 * 86_400.0;

const UNITS: [(&str, f64); 5] = [
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("ms", 0.001),
    ("m", 60.0),
    ("s", 1.0),
];

/// Rank of a unit from largest (0) to smallest, for the ordering rule.
fn rank(unit: &str) -> usize {
    ["d", "h", "m", "s", "ms"]
        .iter()
        .position(|u| *u == unit)
        .expect("known unit")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 90s, 25m, 1h30m, or 0.5 for seconds)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut rest = text;
    let mut secs = 0.0;
    let mut last_rank = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = parse_number(&rest[..digits]).ok_or_else(|| fail("not a number"))?;
        rest = &rest[digits..];
        let (unit, scale) = match UNITS.iter().find(|(u, _)| rest.starts_with(u)) {
            Some(&(u, scale)) => (u, scale),
            // A bare number is seconds, but only on its own: `1h30` is ambiguous.
            None if rest.is_empty() && last_rank.is_none() => ("", 1.0),
            None => return Err(fail("unknown unit (use ms, s, m, h or d)")),
        };
        if !unit.is_empty() {
            let r = rank(unit);
            if last_rank.is_some_and(|last| r <= last) {
                return Err(fail("units must go from largest to smallest, once each"));
            }
            last_rank = Some(r);
        }
        rest = &rest[unit.len()..];
        secs += number * scale;
    }
    if secs > MAX_SECS {
        return Err(fail("longer than ten years"));
    }
    // A value below a nanosecond is still not zero, and zero means "none" to the callers.
    // Nonzero by its digits: enough of them after the point underflow to 0.0 as a float.
    let nonzero = text.bytes().any(|b| matches!(b, b'1'..=b'9'));
    Ok(Duration::from_secs_f64(secs).max(if nonzero {
        Duration::from_nanos(1)
    } else {
        Duration::ZERO
    }))
}

/// Digits with at most one `.`, at least one digit: no sign, no exponent, no `inf`.
fn parse_number(s: &str) -> Option<f64> {
    let valid =
        s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().filter(|&b| b == b'.').count() <= 1;
    if valid { s.parse().ok() } else { None }
}

/// A duration as the log lines show it: `3h10m`, `5m`, `3m12s`, `12s`, and under ten
/// seconds with a tenth when it has one (`0.3s`), so a short wait does not read `0s`.
pub fn format(d: Duration) -> String {
    Human(d).to_string()
}

/// [`format`](fn@format) as a `Display`, for lines written without allocating (the guard logs one
/// per signal it receives).
#[derive(Clone, Copy, Debug)]
pub struct Human(pub Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(10) && d.subsec_millis() >= 50 {
            return write!(f, "{:.1}s", d.as_secs_f64());
        }
        // A short deadline, grace or run is not "0s": `40ms`, `1.2ms`, `312µs`, `1ns`.
        if d < Duration::from_millis(50) && !d.is_zero() {
            return write!(f, "{d:?}");
        }
        let total = d.as_secs() + u64::from(d.subsec_millis() >= 500);
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || total == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// A duration in whole seconds (`194s`), or with a tenth under ten seconds (`0.3s`), for
/// lines that report how long a wait took.
pub fn format_secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs_f64().round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("90s"), Ok(secs(90.0)));
        assert_eq!(parse("25m"), Ok(secs(1500.0)));
        assert_eq!(parse("1h"), Ok(secs(3600.0)));
        assert_eq!(parse("1h30m"), Ok(secs(5400.0)));
        assert_eq!(parse("0.5"), Ok(secs(0.5)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("7d"), Ok(secs(7.0 * 86400.0)));
        assert_eq!(parse("1m30s"), Ok(secs(90.0)));
        assert_eq!(parse("250ms"), Ok(secs(0.25)));
        assert_eq!(parse("1.5h"), Ok(secs(5400.0)));
        assert_eq!(
            parse("2d3h4m5s"),
            Ok(secs(2.0 * 86400.0 + 3.0 * 3600.0 + 245.0))
        );
    }

    #[test]
    fn a_value_below_a_nanosecond_is_not_zero() {
        // Zero means "no deadline": a tiny deadline must not turn into none at all.
        assert_eq!(parse("0.0000000001"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse("0.0000000001ms"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0.0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0h0m0.000s"), Ok(Duration::ZERO));
        let underflows = format!("0.{}1", "0".repeat(400));
        assert_eq!(parse(&underflows), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            " ",
            "-1",
            "+1",
            "1e3",
            "inf",
            "nan",
            "abc",
            "1x",
            "1h1h",
            "30m1h",
            "1h30",
            "1..2",
            ".",
            "s",
            "1 h",
            "99999999999d",
            "1.2.3s",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn formats_for_log_lines() {
        assert_eq!(format(secs(0.3)), "0.3s");
        assert_eq!(format(secs(0.0)), "0s");
        assert_eq!(format(secs(0.04)), "40ms");
        assert_eq!(format(Duration::from_nanos(1)), "1ns");
        assert_eq!(format(Duration::from_micros(312)), "312µs");
        assert_eq!(format(secs(12.0)), "12s");
        assert_eq!(format(secs(192.0)), "3m12s");
        assert_eq!(format(secs(300.0)), "5m");
        assert_eq!(format(secs(3.0 * 3600.0 + 600.0)), "3h10m");
        assert_eq!(format(secs(3600.0 + 1.0)), "1h1s");
        assert_eq!(format_secs(secs(194.2)), "194s");
        assert_eq!(format_secs(secs(0.31)), "0.3s");
    }

    #[test]
    fn format_round_trips_through_parse() {
        for s in [1.0, 59.0, 60.0, 61.0, 3599.0, 3600.0, 5400.0, 86399.0] {
            assert_eq!(parse(&format(secs(s))), Ok(secs(s)), "{s}");
        }
    }
}
