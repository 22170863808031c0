//! Floats in JSON, NaN and ±Inf included.
//!
//! JSON has no NaN or infinity, and serde_json writes them as `null` and refuses to
//! read that `null` back as an `f64`: one `+Inf` from `histogram_quantile` (exactly
//! what a latency alert sees when most requests are slower than the highest bucket)
//! would make the outbox entry, the notification log and the alert state file that
//! carry it unreadable. Every float Vigil stores or sends goes through this module
//! instead: a finite value is a JSON number, a non-finite one the string Prometheus's
//! HTTP API uses — `"+Inf"`, `"-Inf"`, `"NaN"`. Reading takes a number, one of those
//! strings (and `"Inf"`, `"inf"`, `"nan"` as Go's `ParseFloat` does), or `null`, which
//! earlier versions wrote for every non-finite value and which is read as NaN.
//!
//! A leaf module: it imports nothing of Vigil's.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct S {
//!     #[serde(with = "vigil::float")]
//!     v: f64,
//! }
//! let text = serde_json::to_string(&S { v: f64::INFINITY }).unwrap();
//! assert_eq!(text, r#"{"v":"+Inf"}"#);
//! assert_eq!(serde_json::from_str::<S>(&text).unwrap().v, f64::INFINITY);
//! ```

use serde::{Deserialize, Deserializer, Serializer};

/// The text Prometheus's API writes for a non-finite value, `None` for a finite one.
pub fn non_finite_text(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// The one reader of a float written as text (a sample in the exposition format, a
/// bucket's `le`, a value of a rule test, a float in JSON): a decimal number, or
/// `Inf`, `Infinity` and `NaN` in any case, infinities with an optional sign — what
/// Go's `strconv.ParseFloat` takes, and so what Prometheus and promtool take. No
/// whitespace around it.
pub fn parse(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// Writes `v` as a JSON number, or as `"+Inf"`, `"-Inf"`, `"NaN"`.
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_text(*v) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_f64(*v),
    }
}

/// Reads a number, a non-finite string, or `null` (as NaN).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any<'a> {
        Number(f64),
        #[serde(borrow)]
        Text(std::borrow::Cow<'a, str>),
        Null(()),
    }
    match Any::deserialize(d)? {
        Any::Number(v) => Ok(v),
        Any::Text(t) => parse(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a number, \"+Inf\", \"-Inf\" or \"NaN\", found {t:?}"
            ))
        }),
        Any::Null(()) => Ok(f64::NAN),
    }
}

/// The same for an `Option<f64>`: `None` is `null`, and so stays `None` when read.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `None` as `null`, a value as [`super::serialize`] does.
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None`, anything else as [`super::deserialize`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] f64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// A JSON value for `v`: a number, or the non-finite string.
pub fn to_json(v: f64) -> serde_json::Value {
    match non_finite_text(v) {
        Some(t) => serde_json::Value::String(t.into()),
        None => serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
    }
}

/// Floats for property tests: the non-finite ones, the edges, then any at all.
#[cfg(test)]
pub fn arbitrary() -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[test]
    fn one_reader_takes_every_spelling_prometheus_takes() {
        for t in ["+Inf", "Inf", "inf", "INF", "+inf", "Infinity", "+infinity"] {
            assert_eq!(parse(t), Some(f64::INFINITY), "{t}");
        }
        for t in ["-Inf", "-inf", "-Infinity"] {
            assert_eq!(parse(t), Some(f64::NEG_INFINITY), "{t}");
        }
        for t in ["NaN", "nan", "NAN"] {
            assert!(parse(t).is_some_and(f64::is_nan), "{t}");
        }
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("-0.25"), Some(-0.25));
        for t in ["", " 1", "1 ", "Inff", "0x1p3", "1_000"] {
            assert_eq!(parse(t), None, "{t:?}");
        }
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct S {
        #[serde(with = "super")]
        v: f64,
        #[serde(with = "super::option", default)]
        o: Option<f64>,
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn non_finite_values_are_written_as_prometheus_writes_them_and_read_back() {
        for (v, text) in [
            (f64::INFINITY, r#"{"v":"+Inf","o":"+Inf"}"#),
            (f64::NEG_INFINITY, r#"{"v":"-Inf","o":"-Inf"}"#),
            (f64::NAN, r#"{"v":"NaN","o":"NaN"}"#),
            (2.5, r#"{"v":2.5,"o":2.5}"#),
        ] {
            let json = serde_json::to_string(&S { v, o: Some(v) }).unwrap();
            assert_eq!(json, text);
            let back: S = serde_json::from_str(&json).unwrap();
            assert!(same(back.v, v) && same(back.o.unwrap(), v), "{json}");
        }
    }

    #[test]
    fn the_null_earlier_versions_wrote_is_read_as_nan_and_none_stays_none() {
        let back: S = serde_json::from_str(r#"{"v":null,"o":null}"#).unwrap();
        assert!(back.v.is_nan());
        assert_eq!(back.o, None);
        let back: S = serde_json::from_str(r#"{"v":"inf"}"#).unwrap();
        assert_eq!(back.v, f64::INFINITY);
    }

    #[test]
    fn a_string_that_is_no_number_is_refused_with_what_was_found() {
        let e = serde_json::from_str::<S>(r#"{"v":"lots"}"#).unwrap_err();
        assert!(e.to_string().contains("\"lots\""), "{e}");
    }

    #[test]
    fn to_json_never_answers_null_for_a_value() {
        assert_eq!(to_json(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(to_json(-1.5), serde_json::json!(-1.5));
    }
}
