//! Maintenance windows: a cron schedule for the start, a length, a time zone, and the
//! alerts they mute.
//!
//! The schedule is the `cron` crate's: **seconds come first**, and day-of-month and
//! day-of-week are **ANDed** (classic cron ORs them). So `0 0 2 8-14 * Sun` is "02:00
//! on the Sunday between the 8th and the 14th" — the second Sunday of the month.
//!
//! Daylight saving, in the window's own time zone:
//! - a start that falls in the hour skipped in spring does not happen that day (the
//!   window is skipped, as cron skips the job);
//! - a start in the hour repeated in autumn happens once, at its first occurrence;
//! - the length is real time: a 2 h window across a change still lasts 2 h.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cron::Schedule;
use serde::Serialize;

use super::matcher::{Matcher, all_match};

/// A validated maintenance window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Its name, shown in `/status` and logs.
    pub name: String,
    /// When it starts, in `time_zone`.
    pub schedule: Schedule,
    /// How long it lasts.
    pub duration: chrono::Duration,
    /// The zone the schedule is read in.
    pub time_zone: Tz,
    /// Which alerts it mutes (all of them when empty).
    pub matchers: Vec<Matcher>,
}

/// A window as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WindowView {
    /// The window's name.
    pub name: String,
    /// The end of the current occurrence, when one is under way.
    pub active_until: Option<DateTime<Utc>>,
    /// The start of the next occurrence.
    pub next_start: Option<DateTime<Utc>>,
    /// The matchers, as written.
    pub matchers: Vec<String>,
}

impl Window {
    /// A window; the error says which part is wrong.
    pub fn new(
        name: &str,
        schedule: &str,
        duration: std::time::Duration,
        time_zone: &str,
        matchers: Vec<Matcher>,
    ) -> Result<Window, (&'static str, String)> {
        let schedule = Schedule::from_str(schedule).map_err(|_| {
            (
                "schedule",
                format!(
                    "invalid schedule {schedule:?}: write six or seven fields with seconds first, e.g. \"0 0 2 8-14 * Sun\""
                ),
            )
        })?;
        let time_zone = Tz::from_str(time_zone).map_err(|_| {
            (
                "time_zone",
                format!(
                    "unknown time zone {time_zone:?}; use an IANA name like UTC or America/New_York"
                ),
            )
        })?;
        let duration = chrono::Duration::from_std(duration)
            .ok()
            .filter(|d| *d > chrono::Duration::zero())
            .ok_or(("duration", "duration must be above zero".to_string()))?;
        if duration > chrono::Duration::days(366) {
            return Err((
                "duration",
                format!(
                    "duration {} is longer than a year (366d); a window that long mutes for good: use a silence",
                    crate::settings::duration::format(duration.to_std().unwrap_or_default())
                ),
            ));
        }
        Ok(Window {
            name: name.to_string(),
            schedule,
            duration,
            time_zone,
            matchers,
        })
    }

    /// The end of the occurrence under way at `now`, if any.
    pub fn active_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The latest start at or before `now` (the iterator's back end yields starts
        // strictly before its anchor).
        let anchor =
            crate::clock::plus(now, chrono::Duration::seconds(1)).with_timezone(&self.time_zone);
        let start = self.schedule.after(&anchor).next_back()?;
        // The second pass through a repeated hour is the same start as the first.
        let end = crate::clock::plus(self.first_occurrence(&start), self.duration);
        (end > now).then_some(end)
    }

    /// The first instant with `t`'s local time: `t` itself, unless `t` is the second
    /// pass through the hour repeated when the clocks go back.
    fn first_occurrence(&self, t: &DateTime<Tz>) -> DateTime<Utc> {
        use chrono::TimeZone;
        match self.time_zone.from_local_datetime(&t.naive_local()) {
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            _ => t.with_timezone(&Utc),
        }
    }

    /// The next start after `now`.
    pub fn next_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&now.with_timezone(&self.time_zone))
            .take(1000)
            .find(|t| self.first_occurrence(t) == t.with_timezone(&Utc))
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether the window mutes an alert with these labels at `now`.
    pub fn mutes<'a>(&self, get: impl Fn(&str) -> &'a str, now: DateTime<Utc>) -> bool {
        all_match(&self.matchers, get) && self.active_until(now).is_some()
    }

    /// The window as `/status` shows it.
    pub fn view(&self, now: DateTime<Utc>) -> WindowView {
        WindowView {
            name: self.name.clone(),
            active_until: self.active_until(now),
            next_start: self.next_start(now),
            matchers: self.matchers.iter().map(ToString::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(schedule: &str, hours: u64, tz: &str) -> Window {
        Window::new(
            "w",
            schedule,
            Duration::from_secs(hours * 3600),
            tz,
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn the_runbooks_window_is_the_second_sunday_from_two_to_four_utc() {
        let w = window("0 0 2 8-14 * Sun", 2, "UTC");
        // December 2026: Sundays are the 6th, 13th, 20th, 27th.
        assert_eq!(
            w.next_start(at("2026-11-26T00:00:00Z")),
            Some(at("2026-12-13T02:00:00Z"))
        );
        assert_eq!(w.active_until(at("2026-12-13T01:59:59Z")), None);
        assert_eq!(
            w.active_until(at("2026-12-13T02:00:00Z")),
            Some(at("2026-12-13T04:00:00Z")),
            "active from its first second"
        );
        assert_eq!(
            w.active_until(at("2026-12-13T03:59:59Z")),
            Some(at("2026-12-13T04:00:00Z"))
        );
        assert_eq!(w.active_until(at("2026-12-13T04:00:00Z")), None);
        assert_eq!(
            w.active_until(at("2026-12-06T02:30:00Z")),
            None,
            "the first Sunday is not the second"
        );
    }

    #[test]
    fn a_start_in_the_skipped_spring_hour_does_not_happen() {
        // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT; 02:30 never exists.
        let w = window("0 30 2 * * Sun", 1, "America/New_York");
        assert_eq!(w.active_until(at("2026-03-08T07:45:00Z")), None);
        assert_eq!(
            w.next_start(at("2026-03-08T00:00:00Z")),
            Some(at("2026-03-15T06:30:00Z")),
            "next week, 02:30 EDT"
        );
        // The week before, 02:30 EST is 07:30 UTC.
        assert_eq!(
            w.active_until(at("2026-03-01T08:00:00Z")),
            Some(at("2026-03-01T08:30:00Z"))
        );
    }

    #[test]
    fn a_start_in_the_repeated_autumn_hour_happens_once_and_lasts_real_time() {
        // 2026-11-01: New York goes from 02:00 EDT back to 01:00 EST; 01:30 happens
        // at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
        let w = window("0 30 1 * * Sun", 2, "America/New_York");
        assert_eq!(
            w.next_start(at("2026-11-01T00:00:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            w.active_until(at("2026-11-01T06:45:00Z")),
            Some(at("2026-11-01T07:30:00Z")),
            "two real hours from the first 01:30"
        );
        assert_eq!(w.active_until(at("2026-11-01T07:30:00Z")), None);
        assert_eq!(
            w.next_start(at("2026-11-01T05:30:00Z")),
            Some(at("2026-11-08T06:30:00Z")),
            "the repeated 01:30 does not start it again"
        );
    }

    #[test]
    fn bad_parts_are_named() {
        let e = Window::new(
            "w",
            "0 0 2 * * *",
            Duration::from_secs(367 * 86_400),
            "UTC",
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.0, "duration");
        assert!(
            e.1.starts_with("duration 367d is longer than a year"),
            "{}",
            e.1
        );
        let e = Window::new("w", "0 0 2 * *", Duration::from_secs(60), "UTC", vec![]).unwrap_err();
        assert_eq!(e.0, "schedule");
        let e = Window::new(
            "w",
            "0 0 2 * * Sun",
            Duration::from_secs(60),
            "Mars/Base",
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.0, "time_zone");
    }
}
