//! Wall-clock timestamps as the tools write them: RFC 3339 in UTC (`2026-06-10T05:04:02Z`),
//! formatted and parsed by jiff rather than by hand.

use std::time::Duration;

use jiff::{Timestamp, Unit};

/// Now, to the second: `2026-06-10T05:04:02Z`.
pub fn now_seconds() -> String {
    at_seconds(Timestamp::now())
}

/// Now, to the millisecond: `2026-06-10T04:04:00.123Z`.
pub fn now_millis() -> String {
    let ts = Timestamp::now()
        .round(Unit::Millisecond)
        .unwrap_or(Timestamp::now());
    format!("{ts:.3}")
}

/// A wall-clock time `after` from now, to the second (for "deadline at ..." lines).
pub fn seconds_from_now(after: Duration) -> String {
    let now = Timestamp::now();
    let at = jiff::SignedDuration::try_from(after)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now);
    at_seconds(at)
}

fn at_seconds(ts: Timestamp) -> String {
    let ts = ts.round(Unit::Second).unwrap_or(ts);
    format!("{ts:.0}")
}

/// How long ago `rfc3339` was; `None` when it does not parse or lies in the future by
/// more than clock jitter would explain.
pub fn age(rfc3339: &str) -> Option<Duration> {
    let then: Timestamp = rfc3339.parse().ok()?;
    let elapsed = Timestamp::now().duration_since(then);
    if elapsed.is_negative() {
        // A holder on a clock a little ahead of ours: call it just started.
        return (elapsed.as_secs() > -5).then_some(Duration::ZERO);
    }
    Duration::try_from(elapsed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_to_the_second_and_millisecond() {
        let s = now_seconds();
        assert_eq!(s.len(), "2026-06-10T05:04:02Z".len(), "{s}");
        assert!(s.ends_with('Z'), "{s}");
        let ms = now_millis();
        assert_eq!(ms.len(), "2026-06-10T04:04:00.123Z".len(), "{ms}");
    }

    #[test]
    fn age_of_a_timestamp() {
        let age = age(&now_seconds()).unwrap();
        assert!(age < Duration::from_secs(2), "{age:?}");
        let three_hours = Timestamp::now() - jiff::SignedDuration::from_hours(3);
        let age = super::age(&at_seconds(three_hours)).unwrap();
        assert!(age >= Duration::from_secs(3 * 3600 - 1), "{age:?}");
        assert_eq!(super::age("not a time"), None);
        assert_eq!(super::age(""), None);
        let future = Timestamp::now() + jiff::SignedDuration::from_hours(1);
        assert_eq!(super::age(&at_seconds(future)), None);
    }
}
