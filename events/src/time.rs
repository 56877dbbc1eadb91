//! [`Timestamp`]: an instant in UTC milliseconds.
//!
//! The domain never reads a clock; callers pass `now` in as a `Timestamp`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// An instant, UTC, millisecond precision. Serialized as RFC 3339 with exactly three fraction
/// digits and `Z` (`2026-11-27T22:45:41.123Z`), so one instant has one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The one spelling's length: `2026-11-27T22:45:41.123Z`.
const CANONICAL_LEN: usize = 24;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp: {0}")]
pub struct InvalidTimestamp(String);

impl Timestamp {
    /// From milliseconds since the Unix epoch. Refuses instants outside years 1970–9999, the range
    /// RFC 3339 can spell with four-digit years and that no real key or node lives outside of.
    pub fn from_unix_ms(ms: i64) -> Result<Self, InvalidTimestamp> {
        const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        if !(0..=MAX_MS).contains(&ms) {
            return Err(InvalidTimestamp(format!("{ms} ms is outside 1970..=9999")));
        }
        Ok(Self(ms))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> i64 {
        self.0
    }

    /// This instant plus `secs` seconds, saturating at the end of the representable range.
    pub fn plus_seconds(self, secs: i64) -> Self {
        let ms = self.0.saturating_add(secs.saturating_mul(1000));
        Self::from_unix_ms(ms).unwrap_or(Self(253_402_300_799_999))
    }

    /// Parses any RFC 3339 instant, truncating below milliseconds.
    pub fn parse(s: &str) -> Result<Self, InvalidTimestamp> {
        if let Some(t) = Self::parse_canonical(s) {
            return Ok(t);
        }
        let dt = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| InvalidTimestamp(format!("{s:?}: {e}")))?;
        let ms = i64::try_from(dt.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| InvalidTimestamp(format!("{s:?} is out of range")))?;
        Self::from_unix_ms(ms)
    }
}

impl Timestamp {
    /// The one spelling, written without the `time` crate's formatter or an allocation: every
    /// event's envelope carries at least one, so the writer formats one per event.
    fn canonical(self) -> [u8; CANONICAL_LEN] {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
        let (second, milli) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + u8::try_from(v % 10).expect("a digit");
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, hour);
        put(14, 2, minute);
        put(17, 2, second);
        put(20, 3, milli);
        out
    }

    /// Reads exactly the one spelling (`2026-11-27T22:45:41.123Z`); `None` for anything else,
    /// which [`Timestamp::parse`] then reads the general way.
    fn parse_canonical(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != CANONICAL_LEN
            || [
                (4, b'-'),
                (7, b'-'),
                (10, b'T'),
                (13, b':'),
                (16, b':'),
                (19, b'.'),
                (23, b'Z'),
            ]
            .iter()
            .any(|&(i, c)| b[i] != c)
        {
            return None;
        }
        let num = |at: usize, width: usize| -> Option<i64> {
            b[at..at + width].iter().try_fold(0i64, |acc, &d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second, milli) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 3)?);
        if !(1..=12).contains(&month)
            || !(1..=days_in_month(year, month)).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let ms = days_from_civil(year, month, day) * 86_400_000
            + ((hour * 60 + minute) * 60 + second) * 1000
            + milli;
        Self::from_unix_ms(ms).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.canonical();
        f.write_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.canonical();
        s.serialize_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

impl TryFrom<String> for Timestamp {
    type Error = InvalidTimestamp;
    fn try_from(s: String) -> Result<Self, InvalidTimestamp> {
        Self::parse(&s)
    }
}

/// Deserializes from a borrowed or owned string alike (as `try_from = "String"` would accept),
/// without allocating one: every event carries a time.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl serde::de::Visitor<'_> for TimeVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(TimeVisitor)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Timestamp").into()
    }

    /// Written in one spelling only (UTC, three fraction digits, `Z`), which the serialize-side
    /// schema pins with a pattern; a reader takes any RFC 3339 instant, so the deserialize side
    /// checks only the format and the year (exact but for an offset that crosses 1970-01-01).
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let pattern = if generator.contract().is_serialize() {
            r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
        } else {
            r"^(19[7-9][0-9]|[2-9][0-9]{3})-"
        };
        json_schema!({
            "description": "An instant, UTC, millisecond precision, written as RFC 3339 with exactly three fraction digits and `Z` (`2026-11-27T22:45:41.123Z`), from 1970 to 9999.",
            "type": "string",
            "format": "date-time",
            "pattern": pattern,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_with_three_digits_and_z() {
        let t = Timestamp::from_unix_ms(1_795_819_541_123).expect("in range");
        assert_eq!(t.to_string(), "2026-11-27T22:45:41.123Z");
        let zero = Timestamp::from_unix_ms(1_795_819_541_000).expect("in range");
        assert_eq!(zero.to_string(), "2026-11-27T22:45:41.000Z");
    }

    #[test]
    fn parses_offsets_to_utc() {
        let t = Timestamp::parse("2026-11-27T23:45:41.123+01:00").expect("valid");
        assert_eq!(t.to_string(), "2026-11-27T22:45:41.123Z");
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::from_unix_ms(-1).is_err());
    }

    /// The `time` crate's spelling of an instant: the reference for the hand-written one.
    fn reference_spelling(t: Timestamp) -> String {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_ms()) * 1_000_000)
            .expect("in range");
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        dt.format(&fmt).expect("formats")
    }

    /// The `time` crate's reading of an RFC 3339 instant, in ms.
    fn reference_reading(s: &str) -> Option<i64> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
    }

    #[test]
    fn the_fast_spelling_and_reading_agree_with_the_time_crate_at_the_edges() {
        for ms in [
            0,
            1,
            86_399_999,
            951_782_400_000,     // 2000-02-29
            4_107_542_400_000,   // 2100-03-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        ] {
            let t = Timestamp::from_unix_ms(ms).expect("in range");
            assert_eq!(t.to_string(), reference_spelling(t));
            assert_eq!(Timestamp::parse_canonical(&t.to_string()), Some(t));
        }
        for bad in [
            "2026-02-29T00:00:00.000Z", // not a leap year
            "2100-02-29T00:00:00.000Z", // nor is 2100
            "2026-13-01T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-11-27T24:00:00.000Z",
            "2026-11-27T22:60:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-27T22:45:41.123z",
            "2026-11-27 22:45:41.123Z",
            "+026-11-27T22:45:41.123Z",
        ] {
            assert_eq!(Timestamp::parse_canonical(bad), None, "{bad}");
            assert_eq!(
                Timestamp::parse(bad).ok().map(Timestamp::unix_ms),
                reference_reading(bad).filter(|ms| *ms >= 0),
                "{bad}"
            );
        }
        // A leap second is not the canonical spelling; the general reading decides it.
        assert_eq!(Timestamp::parse_canonical("2016-12-31T23:59:60.000Z"), None);
    }

    proptest! {
        #[test]
        fn fast_spelling_matches_the_time_crate(ms in 0i64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_ms(ms).expect("in range");
            prop_assert_eq!(t.to_string(), reference_spelling(t));
            prop_assert_eq!(serde_json::to_string(&t).expect("serializes"), format!("\"{t}\""));
        }

        #[test]
        fn fast_reading_matches_the_time_crate(
            y in 1960i64..10_010, mo in 0i64..14, d in 0i64..33,
            h in 0i64..26, mi in 0i64..62, s in 0i64..62, ms in 0i64..1000,
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
            let fast = Timestamp::parse_canonical(&text).map(Timestamp::unix_ms);
            let reference = reference_reading(&text).filter(|v| (0..=253_402_300_799_999).contains(v));
            if s == 60 || s == 61 {
                prop_assert_eq!(fast, None);
            } else {
                prop_assert_eq!(fast, reference, "{}", text);
            }
        }

        #[test]
        fn round_trips(ms in 0i64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_ms(ms).expect("in range");
            prop_assert_eq!(Timestamp::parse(&t.to_string()).expect("own output parses"), t);
        }
    }
}
