//! Integers as JSON defines them, for fields read from callers and files: `3`, `3.0`
//! and `3e0` are one number, and JSON Schema's `"type": "integer"` (which
//! docs/openapi.json uses) accepts all three. serde's own `u64`/`i64` take only the
//! first, so an API caller or a tool that writes every number as a double (JavaScript's
//! `JSON.stringify(3.0)` is `3`, but many encoders write `3.0`) got a 400 for a valid
//! document. A number with a fraction, outside the type's range, NaN or infinite is
//! still refused with serde's usual error.
//!
//! Use with `#[serde(default, deserialize_with = "crate::json_int::opt_u64")]`.

// Only the API's fields read unsigned integers this way (cookie expiries read signed).
#![cfg_attr(not(feature = "api"), allow(dead_code))]

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// 2^64 and 2^63 as doubles: the first value past `u64::MAX` and `i64::MAX`.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// An optional unsigned integer (`null` or absent is `None`).
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(OptionOf(Unsigned))
}

/// An optional signed integer (`null` or absent is `None`).
pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_option(OptionOf(Signed))
}

#[derive(Clone, Copy)]
struct Unsigned;
#[derive(Clone, Copy)]
struct Signed;
struct OptionOf<V>(V);

/// A double that holds a whole number, or `None`.
fn whole(v: f64) -> Option<f64> {
    (v.is_finite() && v.fract() == 0.0).then_some(v)
}

impl<'de> Visitor<'de> for Unsigned {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        match whole(v) {
            // The range check makes the cast exact: a whole double in [0, 2^64).
            Some(w) if (0.0..TWO_POW_64).contains(&w) => Ok(w as u64),
            _ => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
        }
    }
}

impl<'de> Visitor<'de> for Signed {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        match whole(v) {
            // A whole double in [-2^63, 2^63) converts exactly.
            Some(w) if (-TWO_POW_63..TWO_POW_63).contains(&w) => Ok(w as i64),
            _ => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
        }
    }
}

impl<'de, V: Visitor<'de> + Copy> Visitor<'de> for OptionOf<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Fields {
        #[serde(default, deserialize_with = "super::opt_u64")]
        unsigned: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_i64")]
        signed: Option<i64>,
    }

    fn parse(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_doubles_are_integers() {
        let f = parse(r#"{"unsigned": 3273158.0, "signed": -2e3}"#).expect("whole");
        assert_eq!((f.unsigned, f.signed), (Some(3_273_158), Some(-2000)));
        let f = parse(r#"{"unsigned": 18446744073709551615, "signed": -9223372036854775808}"#)
            .expect("extremes as integers");
        assert_eq!((f.unsigned, f.signed), (Some(u64::MAX), Some(i64::MIN)));
        let f = parse(r#"{"unsigned": null}"#).expect("null");
        assert_eq!((f.unsigned, f.signed), (None, None));
    }

    #[test]
    fn fractions_and_out_of_range_numbers_are_refused() {
        for bad in [
            r#"{"unsigned": 1.5}"#,
            r#"{"unsigned": -1}"#,
            r#"{"unsigned": -1.0}"#,
            r#"{"unsigned": 1.8446744073709552e19}"#,
            r#"{"unsigned": 1e400}"#,
            r#"{"signed": 9.223372036854775808e18}"#,
            r#"{"signed": 9223372036854775808}"#,
            r#"{"signed": "1"}"#,
            r#"{"signed": true}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
