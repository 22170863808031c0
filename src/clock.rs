//! Times that cannot overflow.
//!
//! chrono panics when `DateTime + Duration` leaves its range (about ±262 000 years),
//! and a time read from a silence, a state file or a configured window is data, not
//! code: one silence ending in the year 262 142 used to crash the daemon at every
//! start. Times are bounded where they enter (the API and the config refuse anything
//! after [`latest`]), and every computation on a time that came from outside goes
//! through [`plus`] or [`at_ms`], which saturate instead of panicking.
//!
//! A leaf module: it imports nothing of Vigil's.

use chrono::{DateTime, Utc};

/// The latest time Vigil accepts: 9999-12-31T23:59:59.999Z, in ms since the epoch,
/// the end of what RFC 3339 (and Alertmanager) can write.
pub(crate) const LATEST_MS: i64 = 253_402_300_799_999;

/// The earliest: the epoch. Nothing Vigil keeps happened before it.
pub(crate) const EARLIEST_MS: i64 = 0;

/// [`LATEST_MS`] as a time.
pub fn latest() -> DateTime<Utc> {
    at_ms(LATEST_MS)
}

/// The time `ms` after the epoch, clamped to [`EARLIEST_MS`]..=[`LATEST_MS`].
pub(crate) fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms.clamp(EARLIEST_MS, LATEST_MS)).unwrap_or_default()
}

/// `t + d`, saturating at the ends of chrono's range instead of panicking.
pub fn plus(t: DateTime<Utc>, d: chrono::Duration) -> DateTime<Utc> {
    t.checked_add_signed(d)
        .unwrap_or(if d < chrono::Duration::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// Where a state file that cannot be read is kept: `<path>.unreadable-<time now>`,
/// beside it, so the next write cannot overwrite it and a person can look at it.
pub(crate) fn aside_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".unreadable-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    name.into()
}

/// Whether `t` is one Vigil accepts from outside: not after [`latest`].
pub fn accepted(t: DateTime<Utc>) -> bool {
    t.timestamp_millis() <= LATEST_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_at_the_edge_of_time_saturates() {
        let edge = DateTime::<Utc>::MAX_UTC;
        assert_eq!(
            plus(edge, chrono::Duration::days(1)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            plus(DateTime::<Utc>::MIN_UTC, chrono::Duration::days(-1)),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(at_ms(i64::MAX), latest());
        assert_eq!(at_ms(i64::MIN).timestamp_millis(), 0);
        assert!(accepted(latest()) && !accepted(plus(latest(), chrono::Duration::milliseconds(1))));
        assert_eq!(latest().to_rfc3339(), "9999-12-31T23:59:59.999+00:00");
    }
}
