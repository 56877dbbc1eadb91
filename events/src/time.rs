//! [`Timestamp`]: an instant in UTC milliseconds.
//!
//! The domain never reads a clock; callers pass `now` in as a `Timestamp`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

/// An instant, UTC, millisecond precision. Serialized as RFC 3339 with exactly three fraction
/// digits and `Z` (`2026-11-27T22:45:41.123Z`), so one instant has one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Timestamp(i64);

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
        let dt = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| InvalidTimestamp(format!("{s:?}: {e}")))?;
        let ms = i64::try_from(dt.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| InvalidTimestamp(format!("{s:?} is out of range")))?;
        Self::from_unix_ms(ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .expect("the constructor keeps the instant in range");
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let s = dt.format(&fmt).expect("every in-range instant formats");
        f.write_str(&s)
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

    proptest! {
        #[test]
        fn round_trips(ms in 0i64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_ms(ms).expect("in range");
            prop_assert_eq!(Timestamp::parse(&t.to_string()).expect("own output parses"), t);
        }
    }
}
