//! Durations written the way Prometheus writes them: `500ms`, `10s`, `1m30s`, `2h`.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Collector;

/// The longest duration any setting takes: 10 years. Bounding durations where they
/// enter keeps every time computed with them inside chrono's range.
pub(crate) const LONGEST_MS: u64 = 3650 * 86_400_000;

/// Parses a duration such as `250ms`, `10s`, `1m30s`, `1h`, `7d`. Units must come from
/// largest to smallest, each at most once, and the result must be above zero.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d), like 500ms, 10s or 1m30s"
        )
    };
    let units: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut last_rank = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (rank, (unit, millis)) = units
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(bad)?;
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(bad());
        }
        last_rank = Some(rank);
        rest = &rest[unit.len()..];
        total = number
            .checked_mul(*millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(format!("duration {text:?} must be above zero"));
    }
    if total > LONGEST_MS {
        return Err(format!(
            "duration {text:?} is longer than 10 years (3650d); no setting needs that long, and time computations with it could overflow"
        ));
    }
    Ok(Duration::from_millis(total))
}

/// Like [`parse`], but also takes a zero duration (`0`, `0s`, `0m`…), as rule
/// files (`for: 0s`) and rule tests (`eval_time: 0`) may write.
pub(crate) fn parse_or_zero(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let zero = t == "0"
        || t.strip_prefix('0')
            .is_some_and(|unit| ["ms", "s", "m", "h", "d"].contains(&unit));
    if zero { Ok(Duration::ZERO) } else { parse(t) }
}

/// Whether a setting takes a zero duration (`for: 0s` does; an interval does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// Zero is refused, as for intervals and timeouts.
    Refused,
    /// Zero is taken, as for `for:`, `group_wait:` and `eval_time:`.
    Allowed,
}

/// The one reader of a duration setting: the duration written in `value`, or `None`
/// when it is absent or, with the problem noted at its position, malformed.
pub fn at(value: Option<&Spanned<String>>, zero: Zero, c: &mut Collector) -> Option<Duration> {
    let v = value?;
    let parsed = match zero {
        Zero::Refused => parse(&v.value),
        Zero::Allowed => parse_or_zero(&v.value),
    };
    parsed.map_err(|e| c.at(v.referenced, e)).ok()
}

/// Formats a duration in the same notation, for messages and `/status`.
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d1ms"), Ok(Duration::from_millis(86_400_001)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "", "10", "s", "10x", "1.5s", "-1s", "30s1m", "1s1s", "10 s", "ms",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse("0s"),
            Err("duration \"0s\" must be above zero".into())
        );
    }

    #[test]
    fn durations_past_ten_years_are_refused() {
        assert_eq!(parse("3650d"), Ok(Duration::from_secs(3650 * 86_400)));
        let e = parse("100000000d").unwrap_err();
        assert!(
            e.starts_with("duration \"100000000d\" is longer than 10 years"),
            "{e}"
        );
    }

    #[test]
    fn zero_is_taken_only_where_asked() {
        for zero in ["0", "0s", "0m", "0ms", " 0s "] {
            assert_eq!(parse_or_zero(zero), Ok(Duration::ZERO), "{zero:?}");
        }
        assert_eq!(parse_or_zero("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_or_zero("0x").is_err());
        assert!(parse("0s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["500ms", "10s", "1m30s", "2h", "1d1ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
