//! Durations as policies write them: `30s`, `15m`, `1h`, `1h30m`, `7d`.
//!
//! One or more `<whole number><unit>` parts with units `d` (24 hours), `h`, `m` and `s`, each unit
//! at most once and from the largest to the smallest. No signs, fractions, spaces or `ms`: an
//! approval's lifetime is counted in seconds at the finest. Zero (`0s`) is refused, because every
//! duration in a policy is a lifetime or a timeout where zero would mean "never usable".

use std::time::Duration;

/// The regular expression the CRD schema uses for durations (the API server's first check).
pub const DURATION_PATTERN: &str = "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// The longest duration accepted anywhere in a policy: 366 days.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Nothing to parse.
    #[error("is empty; write e.g. 30s, 15m, 1h or 1h30m")]
    Empty,
    /// A character that is neither a digit nor a unit.
    #[error(
        "has {0:?}, which is not a digit or a unit (d, h, m, s); write e.g. 30s, 15m, 1h or 1h30m"
    )]
    BadChar(char),
    /// A number without a unit after it.
    #[error("ends with a number without a unit (d, h, m or s)")]
    MissingUnit,
    /// A unit without a number before it.
    #[error("has the unit {0:?} without a number before it")]
    MissingNumber(char),
    /// Units repeated or smallest first.
    #[error("has the unit {0:?} out of order; write units once, largest first (d, h, m, s)")]
    Order(char),
    /// `0s`, `0h0m`.
    #[error("is zero; give a positive duration")]
    Zero,
    /// More than [`MAX_DURATION`].
    #[error("is longer than 366d")]
    TooLong,
}

/// Parses a policy duration such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    if text.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    // Rank of the last unit seen; units must strictly decrease in size.
    let mut last_rank = usize::MAX;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(u64::from(digit));
            number = Some(n);
            continue;
        }
        let (rank, seconds) = match c {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            other => return Err(ParseDurationError::BadChar(other)),
        };
        let n = number.take().ok_or(ParseDurationError::MissingNumber(c))?;
        if rank >= last_rank {
            return Err(ParseDurationError::Order(c));
        }
        last_rank = rank;
        total = total.saturating_add(n.saturating_mul(seconds));
    }
    if number.is_some() {
        return Err(ParseDurationError::MissingUnit);
    }
    if total == 0 {
        return Err(ParseDurationError::Zero);
    }
    let duration = Duration::from_secs(total);
    if duration > MAX_DURATION {
        return Err(ParseDurationError::TooLong);
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("7d", 604_800),
            ("1d2h3m4s", 93_784),
            ("90m", 5400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_malformed_input_with_a_reason() {
        use ParseDurationError::*;
        for (text, err) in [
            ("", Empty),
            ("-1h", BadChar('-')),
            ("1.5h", BadChar('.')),
            ("1 h", BadChar(' ')),
            ("10", MissingUnit),
            ("h", MissingNumber('h')),
            ("30m1h", Order('h')),
            ("1h1h", Order('h')),
            ("0s", Zero),
            ("400d", TooLong),
            ("5ms", MissingNumber('s')),
            ("1w", BadChar('w')),
        ] {
            assert_eq!(parse_duration(text), Err(err), "{text:?}");
        }
    }

    #[test]
    fn huge_numbers_saturate_instead_of_overflowing() {
        assert_eq!(
            parse_duration("99999999999999999999999d"),
            Err(ParseDurationError::TooLong)
        );
    }
}
