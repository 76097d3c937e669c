//! Time values as AD stores them (FILETIME: 100 ns ticks since 1601) and as people read them.

use time::OffsetDateTime;

/// Seconds between 1601-01-01 and 1970-01-01.
const FILETIME_EPOCH_OFFSET_SECS: i64 = 11_644_473_600;

/// `2026-11-22 03:01 UTC`, or the raw number when it is out of range.
pub fn unix_to_text(secs: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{secs} (Unix time)"),
    }
}

/// A FILETIME as Unix seconds; `None` for 0 and for "never" (`i64::MAX`).
pub fn filetime_to_unix(ticks: i64) -> Option<i64> {
    if ticks <= 0 || ticks == i64::MAX {
        return None;
    }
    Some(ticks / 10_000_000 - FILETIME_EPOCH_OFFSET_SECS)
}

/// Unix seconds as a FILETIME.
pub fn unix_to_filetime(secs: i64) -> i64 {
    (secs + FILETIME_EPOCH_OFFSET_SECS) * 10_000_000
}

/// RFC 3339 in UTC (`2026-11-22T03:01:00Z`), as the cloud API writes times.
pub fn unix_to_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Parses what `unix_to_rfc3339` writes (any offset).
pub fn rfc3339_to_unix(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// AD stores durations such as `maxPwdAge` as negative 100 ns intervals; this gives whole days,
/// or `None` for "never" (0 or the minimum value).
pub fn interval_days(value: i64) -> Option<i64> {
    if value == 0 || value == i64::MIN {
        return None;
    }
    Some(value.unsigned_abs() as i64 / 10_000_000 / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_filetime_both_ways() {
        let t = 1_700_000_000;
        assert_eq!(filetime_to_unix(unix_to_filetime(t)), Some(t));
        assert_eq!(filetime_to_unix(0), None);
        assert_eq!(filetime_to_unix(i64::MAX), None);
        assert_eq!(unix_to_text(0), "1970-01-01 00:00 UTC");
        // 42 days, as AD's default maxPwdAge.
        assert_eq!(interval_days(-36_288_000_000_000), Some(42));
        assert_eq!(interval_days(i64::MIN), None);
    }
}
