//! RFC 3339 UTC timestamps without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn now_rfc3339() -> String {
    Timestamp::now().as_str().to_owned()
}

/// An RFC 3339 UTC time with microseconds, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, held inline: what
/// every event carries, made without an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp([u8; 27]);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix_micros(since.as_secs(), since.subsec_micros())
    }

    /// Seconds since the Unix epoch plus microseconds (years past 9999 show as 9999).
    pub fn from_unix_micros(secs: u64, micros: u32) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut digits = |at: usize, width: usize, mut value: u64| {
            for place in b[at..at + width].iter_mut().rev() {
                *place = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        digits(0, 4, y.clamp(0, 9999) as u64);
        digits(5, 2, u64::from(m));
        digits(8, 2, u64::from(d));
        digits(11, 2, rem / 3600);
        digits(14, 2, (rem % 3600) / 60);
        digits(17, 2, rem % 60);
        digits(20, 6, u64::from(micros.min(999_999)));
        Self(b)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

/// Unix nanoseconds of the current time, for OTLP's `timeUnixNano`.
pub fn now_unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Formats seconds since the Unix epoch plus microseconds as RFC 3339 UTC.
pub fn format_unix_micros(secs: u64, micros: u32) -> String {
    Timestamp::from_unix_micros(secs, micros)
        .as_str()
        .to_owned()
}

/// Parses the `YYYY-MM-DDTHH:MM:SS[.f+]Z` form this crate writes into Unix nanoseconds.
pub fn parse_rfc3339_nanos(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    let frac = &s[19..s.len() - 1];
    let nanos = match frac.strip_prefix('.') {
        Some(digits) if !digits.is_empty() && digits.len() <= 9 => {
            let v: u128 = digits.parse().ok()?;
            v * 10u128.pow(9 - digits.len() as u32)
        }
        None if frac.is_empty() => 0,
        _ => return None,
    };
    u128::try_from(secs).ok().map(|s| s * 1_000_000_000 + nanos)
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_unix_micros(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(
            format_unix_micros(1_709_210_096, 7),
            "2024-02-29T12:34:56.000007Z"
        );
        assert_eq!(
            format_unix_micros(4_102_444_799, 999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn digit_by_digit_matches_format() {
        let mut secs = 0u64;
        while secs < 253_402_300_799 {
            let micros = (secs % 1_000_000) as u32;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let expected = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60
            );
            assert_eq!(format_unix_micros(secs, micros), expected);
            secs += 7_919_993;
        }
    }

    #[test]
    fn parse_round_trips() {
        for secs in [0u64, 1_709_210_096, 4_102_444_799, 1_000_000_000] {
            let s = format_unix_micros(secs, 123_456);
            let nanos = parse_rfc3339_nanos(&s).unwrap();
            assert_eq!(nanos, u128::from(secs) * 1_000_000_000 + 123_456_000, "{s}");
        }
        assert_eq!(
            parse_rfc3339_nanos("2024-02-29T12:34:56Z"),
            Some(1_709_210_096_000_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("not a time"), None);
    }
}
