//! An event's RFC 3339 `timestamp` as nanoseconds since 1970.
//!
//! Every event carries one, so the shape browsers send (`Date.prototype.toISOString`:
//! `YYYY-MM-DDTHH:MM:SS.sssZ`) is read by hand; any other RFC 3339 form (offsets, a lower-case `t`
//! or `z`, a space, a leap second, more than nine fraction digits) goes to the `time` crate, which
//! stays the reference: the tests check both agree.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Invalid, Reason};

/// Nanoseconds since 1970 in 64 bits, as OTLP carries them: 1970-01-01T00:00:00Z to
/// 2554-07-21T23:34:33.709551615Z, the range the message states.
pub fn parse_timestamp(value: &str) -> Result<u64, Invalid> {
    let invalid = |reason: &str| Invalid::new(Reason::InvalidTimestamp, format!("`timestamp` {value:?} {reason}"));
    let nanos = match utc_fast_path(value.as_bytes()) {
        Some(nanos) => nanos,
        None => OffsetDateTime::parse(value, &Rfc3339)
            .map_err(|_| invalid("is not an RFC 3339 time, e.g. 2025-01-15T10:30:45.123Z"))?
            .unix_timestamp_nanos(),
    };
    u64::try_from(nanos).map_err(|_| invalid("is out of range: from 1970-01-01T00:00:00Z to 2554-07-21T23:34:33Z"))
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` with every field in range, as nanoseconds since 1970 (negative
/// before); `None` for anything else, valid or not, which the `time` crate then decides.
fn utc_fast_path(s: &[u8]) -> Option<i128> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (fraction, zone) = s[19..].split_at(s.len() - 20);
    if zone != b"Z" {
        return None;
    }
    let nanosecond = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            digits_value(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = digits_value(&s[0..4])?;
    let (month, day) = (digits_value(&s[5..7])?, digits_value(&s[8..10])?);
    let (hour, minute, second) = (digits_value(&s[11..13])?, digits_value(&s[14..16])?, digits_value(&s[17..19])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Second 60 (a leap second) is only valid at the end of a month: `time` knows the rule.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_since_epoch(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanosecond))
}

/// The value of ASCII digits; `None` if any byte is not one.
fn digits_value(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &b| b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `time` crate alone says: the reference the fast path must agree with.
    fn reference(value: &str) -> Option<i128> {
        OffsetDateTime::parse(value, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp_nanos)
    }

    fn agrees(value: &str) {
        if let Some(fast) = utc_fast_path(value.as_bytes()) {
            assert_eq!(Some(fast), reference(value), "{value}");
        }
        let reference = reference(value).and_then(|nanos| u64::try_from(nanos).ok());
        assert_eq!(parse_timestamp(value).ok(), reference, "{value}");
    }

    #[test]
    fn every_day_around_the_range_and_every_leap_year_rule_agree_with_the_time_crate() {
        let mut fast = 0;
        let mut check = |value: String| {
            fast += usize::from(utc_fast_path(value.as_bytes()).is_some());
            agrees(&value);
        };
        // Every year RFC 3339 can write, at the days leap years move.
        for year in 0..=9999 {
            for date in ["01-01", "02-28", "02-29", "02-30", "03-01", "12-31"] {
                check(format!("{year:04}-{date}T23:59:59.999Z"));
            }
        }
        // Every month and day, valid or not, over the range OTLP carries and its edges.
        for year in (1965..=2560).chain([0, 2600, 9999]) {
            for month in 0..=13 {
                for day in 0..=32 {
                    check(format!("{year:04}-{month:02}-{day:02}T00:00:00Z"));
                }
            }
        }
        assert!(fast > 250_000, "the fast path took only {fast} dates");
    }

    #[test]
    fn times_fractions_and_leap_years_agree_with_the_time_crate() {
        let dates = ["1970-01-01", "1969-12-31", "2000-02-29", "1900-02-29", "2024-02-29", "2023-02-29", "2554-07-21"];
        let times = [
            "00:00:00", "23:59:59", "24:00:00", "23:60:00", "12:30:45", "23:59:60", "23:34:33", "23:34:34", "9:30:45",
            "0a:00:00",
        ];
        let fractions = [
            "",
            ".",
            ".1",
            ".12",
            ".123",
            ".709551615",
            ".709551616",
            ".1234567891",
            ".000000000",
            ".999999999",
            ".1a",
            ".-1",
            ",5",
        ];
        let zones = ["Z", "z", "", "+00:00", "-00:00", "+01:30", "-23:59", "+24:00", "+01:60", "ZZ", " Z", "Z "];
        for date in dates {
            for time in times {
                for fraction in fractions {
                    for zone in zones {
                        for separator in ["T", "t", " "] {
                            agrees(&format!("{date}{separator}{time}{fraction}{zone}"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_leap_second_at_the_end_of_a_month_is_left_to_the_time_crate() {
        assert_eq!(utc_fast_path(b"2016-12-31T23:59:60Z"), None);
        assert!(parse_timestamp("2016-12-31T23:59:60Z").is_ok());
        assert!(parse_timestamp("2016-12-30T23:59:60Z").is_err());
    }

    #[test]
    fn the_browser_shape_takes_the_fast_path() {
        assert_eq!(utc_fast_path(b"2025-01-15T10:30:45.123Z"), Some(1_736_937_045_123_000_000));
        assert_eq!(utc_fast_path(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(utc_fast_path(b"2554-07-21T23:34:33.709551615Z"), Some(i128::from(u64::MAX)));
    }

    #[test]
    fn garbage_agrees_too() {
        for value in
            ["", "Z", "yesterday", "2025-01-15", "2025-01-15T10:30:45", "+025-01-15T10:30:45Z", "２025-01-15T10:30:45Z"]
        {
            agrees(value);
        }
    }
}
