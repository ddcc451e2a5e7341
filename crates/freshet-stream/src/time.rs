//! Event-time arithmetic: duration units, datetime parsing and printing,
//! and window alignment. Times are microseconds since the Unix epoch, UTC;
//! alignment uses `div_euclid` so times before 1970 land in the right window.

use std::cell::Cell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

pub const MICROS_PER_MILLI: i64 = 1_000;
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// The length of one `unit` (Stream Analytics' names and abbreviations).
pub fn unit_micros(unit: &str) -> Option<i64> {
    let micros = match unit.to_ascii_lowercase().as_str() {
        "day" | "dd" | "d" => 86_400 * MICROS_PER_SECOND,
        "hour" | "hh" => 3_600 * MICROS_PER_SECOND,
        "minute" | "mi" | "n" => 60 * MICROS_PER_SECOND,
        "second" | "ss" | "s" => MICROS_PER_SECOND,
        "millisecond" | "ms" => MICROS_PER_MILLI,
        "microsecond" | "mcs" => 1,
        _ => return None,
    };
    Some(micros)
}

/// Parses an ISO-8601 datetime; one without an offset is UTC.
pub fn parse_datetime(text: &str) -> Option<i64> {
    if let Some(micros) = parse_utc_fast(text.as_bytes()) {
        return Some(micros);
    }
    let trimmed = text.trim();
    if trimmed.len() < text.len()
        && let Some(micros) = parse_utc_fast(trimmed.as_bytes())
    {
        return Some(micros);
    }
    let text = trimmed;
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed.and_utc().timestamp_micros());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, the shape producers mostly send,
/// without a general parser; anything else is left to chrono.
fn parse_utc_fast(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 20 || bytes[bytes.len() - 1] != b'Z' {
        return None;
    }
    let prefix: [u8; 19] = bytes[..19].try_into().ok()?;
    let whole_seconds = match LAST_SECOND.get() {
        (last, micros) if last == prefix => micros,
        _ => {
            let micros = seconds_micros(&prefix)?;
            LAST_SECOND.set((prefix, micros));
            micros
        }
    };
    let fraction = &bytes[19..bytes.len() - 1];
    let micros_of_second = match fraction {
        [] => 0,
        [b'.', rest @ ..] if !rest.is_empty() && rest.len() <= 9 => {
            let value = rest
                .iter()
                .try_fold(0, |value, &byte| Some(value * 10 + digit(byte)?))?;
            // Scale to microseconds (truncating below them).
            let scale = 10i64.pow(rest.len().abs_diff(6) as u32);
            if rest.len() <= 6 {
                value * scale
            } else {
                value / scale
            }
        }
        _ => return None,
    };
    Some(whole_seconds + micros_of_second)
}

thread_local! {
    /// The last `YYYY-MM-DDTHH:MM:SS` read and its microseconds: events
    /// come roughly in time order, so thousands in a row share it.
    static LAST_SECOND: Cell<([u8; 19], i64)> = const { Cell::new((*b"1970-01-01T00:00:00", 0)) };
}

/// `YYYY-MM-DDTHH:MM:SS` as microseconds since the epoch.
fn seconds_micros(bytes: &[u8; 19]) -> Option<i64> {
    let two = |at: usize| Some(digit(bytes[at])? * 10 + digit(bytes[at + 1])?);
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (two(0)? * 100 + two(2)?, two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second) * MICROS_PER_SECOND)
}

/// The value of an ASCII digit.
fn digit(byte: u8) -> Option<i64> {
    let value = byte.wrapping_sub(b'0');
    (value < 10).then_some(i64::from(value))
}

/// Days from 1970-01-01 to a proleptic Gregorian date, `None` when the
/// date does not exist. Counted in 400-year eras starting on March 1st,
/// so the leap day ends a year and each era has the same 146,097 days.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    // Months from March: March is 0, February 11.
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719,468 days from 0000-03-01 to 1970-01-01.
    Some(era * 146_097 + day_of_era - 719_468)
}

/// ISO-8601 UTC with milliseconds, or microseconds when they are needed.
pub fn format_datetime(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(time) if micros % MICROS_PER_MILLI == 0 => {
            time.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => micros.to_string(),
    }
}

/// The smallest `k * step + offset` that is at or after `time`.
pub fn align_up(time: i64, step: i64, offset: i64) -> i64 {
    debug_assert!(step > 0);
    let shifted = time - offset;
    let quotient = shifted.div_euclid(step);
    let aligned = quotient * step + offset;
    if aligned == time {
        aligned
    } else {
        aligned + step
    }
}

/// The largest `k * step + offset` that is at or before `time`.
pub fn align_down(time: i64, step: i64, offset: i64) -> i64 {
    debug_assert!(step > 0);
    (time - offset).div_euclid(step) * step + offset
}

/// The ends of the hopping windows `(end - size, end]` that contain `time`,
/// earliest first. Tumbling windows are hopping windows with `hop == size`.
pub fn window_ends(time: i64, size: i64, hop: i64, offset: i64) -> impl Iterator<Item = i64> {
    let first = align_up(time, hop, offset);
    (0..)
        .map(move |index| first + index * hop)
        .take_while(move |end| end - size < time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_agree_with_chrono_on_every_date_of_four_centuries() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut date = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2201, 1, 1).unwrap();
        use chrono::Datelike;
        while date < end {
            let expected = date.signed_duration_since(epoch).num_days();
            let got = days_from_civil(
                i64::from(date.year()),
                i64::from(date.month()),
                i64::from(date.day()),
            );
            assert_eq!(got, Some(expected), "{date}");
            date = date.succ_opt().unwrap();
        }
        for (year, month, day) in [
            (2026, 2, 29),
            (1900, 2, 29),
            (2026, 4, 31),
            (2026, 13, 1),
            (2026, 0, 1),
            (2026, 1, 0),
        ] {
            assert_eq!(
                days_from_civil(year, month, day),
                None,
                "{year}-{month}-{day}"
            );
        }
        assert!(days_from_civil(2000, 2, 29).is_some());
        assert_eq!(
            parse_datetime("2026-11-23T11:19:05.233000Z"),
            Some(
                DateTime::parse_from_rfc3339("2026-11-23T11:19:05.233Z")
                    .unwrap()
                    .timestamp_micros()
            )
        );
        assert_eq!(parse_datetime("2026-02-30T00:00:00Z"), None);
    }

    #[test]
    fn windows_are_start_exclusive_and_end_inclusive() {
        let second = MICROS_PER_SECOND;
        // An event exactly at 30 s belongs to (0, 30], not (30, 60].
        assert_eq!(
            window_ends(30 * second, 30 * second, 30 * second, 0).collect::<Vec<_>>(),
            vec![30 * second]
        );
        assert_eq!(
            window_ends(30 * second + 1, 30 * second, 30 * second, 0).collect::<Vec<_>>(),
            vec![60 * second]
        );
        // Hopping 10 s every 5 s: an event at 12 s is in (5, 15] and (10, 20].
        assert_eq!(
            window_ends(12 * second, 10 * second, 5 * second, 0).collect::<Vec<_>>(),
            vec![15 * second, 20 * second]
        );
        // Before the epoch.
        assert_eq!(window_ends(-1, 10, 10, 0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(window_ends(-10, 10, 10, 0).collect::<Vec<_>>(), vec![-10]);
        // An offset shifts the alignment.
        assert_eq!(window_ends(3, 10, 10, 2).collect::<Vec<_>>(), vec![12]);
    }

    #[test]
    fn datetimes_parse_and_print_in_utc() {
        let micros = parse_datetime("2026-11-23T01:02:03.5+01:00").unwrap();
        assert_eq!(format_datetime(micros), "2026-11-23T00:02:03.500Z");
        assert_eq!(parse_datetime("2026-11-23 00:02:03.5"), Some(micros));
        assert_eq!(format_datetime(micros + 1), "2026-11-23T00:02:03.500001Z");
        assert_eq!(
            parse_datetime("2026-11-23"),
            parse_datetime("2026-11-23T00:00:00Z")
        );
        assert_eq!(parse_datetime("yesterday"), None);
        // The fast path agrees with chrono on every shape it takes.
        for text in [
            "2026-11-23T00:02:03Z",
            "2026-11-23T00:02:03.5Z",
            "2026-11-23T00:02:03.123456789Z",
            "1969-12-31T23:59:59.999Z",
            "2024-02-29T12:00:00.000001Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_micros();
            assert_eq!(parse_utc_fast(text.as_bytes()), Some(chrono), "{text}");
        }
        // The last second read is remembered; what follows it is still
        // checked, and a second not yet read is parsed in full.
        let second = parse_utc_fast(b"2026-11-23T00:02:03Z").unwrap();
        assert_eq!(
            parse_utc_fast(b"2026-11-23T00:02:03.25Z"),
            Some(second + 250_000)
        );
        assert_eq!(parse_utc_fast(b"2026-11-23T00:02:03.2xZ"), None);
        assert_eq!(
            parse_utc_fast(b"2026-11-23T00:02:04Z"),
            Some(second + 1_000_000)
        );
        assert_eq!(parse_utc_fast(b"2026-11-23T00:02:03Z"), Some(second));
        assert_eq!(parse_utc_fast(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_fast(&[0; 20]), None);
        assert_eq!(parse_utc_fast(b"2026-02-30T00:00:00Z"), None);
        assert_eq!(parse_utc_fast(b"2026-11-23T24:00:00Z"), None);
        assert_eq!(unit_micros("MI"), Some(60 * MICROS_PER_SECOND));
        assert_eq!(unit_micros("fortnight"), None);
    }
}
