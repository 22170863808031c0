//! Per component, per minute: checks, failures, time down, time known and latency
//! (min, p50, p95, max), kept on disk for [`KEEP_DAYS`] days.
//!
//! The series store keeps raw samples for its retention (an hour); this is what is
//! kept past it: one 32-byte record per component and minute, appended to one file
//! per component and UTC day (`history/minutes/p-<component>/<YYYY-MM-DD>.bin`), so
//! a day costs at most 1 440 × 32 = 46 080 bytes per component and pruning is
//! deleting a file.
//!
//! Downtime is time-weighted, not counted in checks: a component is down from a
//! failed check until the next successful one, whatever the probe interval, and the
//! time Vigil did not watch (stopped, or a gap longer than [`MAX_GAP_MS`] plus the
//! interval) is *unknown*, neither up nor down. Uptime is `1 - down / known`.
//!
//! Each record carries a CRC-32 of its bytes. A record that fails it, or a tail cut
//! short by a SIGKILL during a write, is never silently dropped: the file is copied
//! aside (`<file>.unreadable-<time>`), rewritten with the records that could be read,
//! and the problem shown in `/status`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::health::{Component, ComponentStatus};

/// Days of history kept.
pub const KEEP_DAYS: i64 = 90;

/// One record's size on disk, in bytes.
pub const RECORD_BYTES: usize = 32;

/// Minutes kept in memory per component, for the 24-hour latency chart.
pub const RECENT_MINUTES: usize = 24 * 60;

/// Latencies kept per component and minute for its quantiles (a probe every 100 ms
/// makes 600); past this, min and max stay exact and the quantiles are over the
/// first ones.
const MAX_LATENCIES: usize = 1_000;

/// The longest time between two observations still counted as watched, on top of
/// the probe's interval: past it, the gap is unknown.
pub const MAX_GAP_MS: i64 = 30_000;

const MINUTE_MS: i64 = 60_000;

/// One component's minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    /// Checks that ended in it.
    pub checks: u32,
    /// Of which failed.
    pub failures: u32,
    /// Milliseconds of it the component was down.
    pub down_ms: u32,
    /// Milliseconds of it the component's state was known (up or down).
    pub known_ms: u32,
    /// Latency of its checks in ms: min, p50, p95, max; `None` without a check.
    pub latency: Option<[f32; 4]>,
}

impl Minute {
    fn empty(minute: i64) -> Minute {
        Minute {
            minute,
            checks: 0,
            failures: 0,
            down_ms: 0,
            known_ms: 0,
            latency: None,
        }
    }

    /// The record's bytes: little-endian minute (u32), checks, failures, down and
    /// known ms (u16 each, saturated), the four latencies (f32, NaN for none), then
    /// the CRC-32 of the 28 bytes before it.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        let sat = |v: u32| v.min(u32::from(u16::MAX)) as u16;
        b[0..4].copy_from_slice(&(self.minute.clamp(0, i64::from(u32::MAX)) as u32).to_le_bytes());
        b[4..6].copy_from_slice(&sat(self.checks).to_le_bytes());
        b[6..8].copy_from_slice(&sat(self.failures).to_le_bytes());
        b[8..10].copy_from_slice(&sat(self.down_ms).to_le_bytes());
        b[10..12].copy_from_slice(&sat(self.known_ms).to_le_bytes());
        let lat = self.latency.unwrap_or([f32::NAN; 4]);
        for (i, v) in lat.iter().enumerate() {
            b[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a record; `None` when its CRC does not match.
    pub fn decode(b: &[u8; RECORD_BYTES]) -> Option<Minute> {
        let u16_at = |i: usize| u32::from(u16::from_le_bytes([b[i], b[i + 1]]));
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if crc32fast::hash(&b[..28]) != u32_at(28) {
            return None;
        }
        let f = |i: usize| f32::from_bits(u32_at(12 + 4 * i));
        let lat = [f(0), f(1), f(2), f(3)];
        let m = Minute {
            minute: i64::from(u32_at(0)),
            checks: u16_at(4),
            failures: u16_at(6),
            down_ms: u16_at(8),
            known_ms: u16_at(10),
            latency: (!lat[0].is_nan()).then_some(lat),
        };
        // A record that passes its CRC but says the impossible was written by
        // something else: refused like a damaged one.
        (m.failures <= m.checks && m.down_ms <= m.known_ms && m.known_ms <= MINUTE_MS as u32)
            .then_some(m)
    }

    /// Two records of one minute (a restart inside it) as one.
    fn merge(&mut self, o: &Minute) {
        let (a, b) = (self.checks.max(1) as f32, o.checks.max(1) as f32);
        self.latency = match (self.latency, o.latency) {
            (Some(x), Some(y)) => Some([
                x[0].min(y[0]),
                (x[1] * a + y[1] * b) / (a + b),
                (x[2] * a + y[2] * b) / (a + b),
                x[3].max(y[3]),
            ]),
            (x, y) => x.or(y),
        };
        self.checks += o.checks;
        self.failures += o.failures;
        self.known_ms = (self.known_ms + o.known_ms).min(MINUTE_MS as u32);
        self.down_ms = (self.down_ms + o.down_ms).min(self.known_ms);
    }
}

/// A UTC day: days since the Unix epoch.
pub fn day_of_minute(minute: i64) -> i64 {
    minute.div_euclid(24 * 60)
}

/// The day's date.
pub fn date(day: i64) -> NaiveDate {
    DateTime::from_timestamp(day * 86_400, 0)
        .unwrap_or_default()
        .date_naive()
}

/// What one day of one component adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DaySummary {
    /// Checks.
    pub checks: u64,
    /// Failed checks.
    pub failures: u64,
    /// Milliseconds down.
    pub down_ms: u64,
    /// Milliseconds watched.
    pub known_ms: u64,
}

impl DaySummary {
    fn add(&mut self, m: &Minute) {
        self.checks += u64::from(m.checks);
        self.failures += u64::from(m.failures);
        self.down_ms += u64::from(m.down_ms);
        self.known_ms += u64::from(m.known_ms);
    }
}

/// One component's history in memory: the summary of every day kept, and the last
/// 24 hours minute by minute.
#[derive(Debug, Clone, Default)]
pub struct ComponentHistory {
    /// Per day (days since the epoch).
    pub days: BTreeMap<i64, DaySummary>,
    /// The newest minutes, oldest first, at most [`RECENT_MINUTES`].
    pub recent: VecDeque<Minute>,
}

impl ComponentHistory {
    /// Adds a closed minute (merged with the newest one if it is the same minute).
    pub fn add(&mut self, m: Minute) {
        self.days
            .entry(day_of_minute(m.minute))
            .or_default()
            .add(&m);
        // A clock stepped back (or a minute once written from a clock far ahead):
        // the chart follows the clock as it is now, never stays stuck behind a
        // minute from the future.
        while self
            .recent
            .back()
            .is_some_and(|last| last.minute > m.minute)
        {
            self.recent.pop_back();
        }
        match self.recent.back_mut() {
            Some(last) if last.minute == m.minute => last.merge(&m),
            _ => self.recent.push_back(m),
        }
        while self.recent.len() > RECENT_MINUTES {
            self.recent.pop_front();
        }
    }

    /// Forgets days older than `KEEP_DAYS` before `today`.
    pub fn prune(&mut self, today: i64) {
        self.days = self.days.split_off(&(today - KEEP_DAYS + 1));
    }

    /// Uptime over the `days` days up to and including `today`, and the part of
    /// it that was watched; `None` when none of it was.
    pub fn uptime(&self, today: i64, days: i64) -> Option<f64> {
        let (down, known) = self
            .days
            .range(today - days + 1..=today)
            .fold((0u64, 0u64), |(d, k), (_, s)| {
                (d + s.down_ms, k + s.known_ms)
            });
        (known > 0).then(|| 1.0 - down as f64 / known as f64)
    }

    /// Uptime over the last 24 hours before `now_minute`, minute by minute.
    pub fn uptime_24h(&self, now_minute: i64) -> Option<f64> {
        let (down, known) = self
            .recent
            .iter()
            .filter(|m| m.minute > now_minute - 24 * 60)
            .fold((0u64, 0u64), |(d, k), m| {
                (d + u64::from(m.down_ms), k + u64::from(m.known_ms))
            });
        (known > 0).then(|| 1.0 - down as f64 / known as f64)
    }
}

/// The minute being filled for one component, and what the next observation is
/// measured against.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// The status since `since_ms`.
    status: ComponentStatus,
    /// Up to when time has been counted.
    since_ms: Option<i64>,
    /// The counters at the last observation (they restart at a reload).
    checks_total: u64,
    failures_total: u64,
    /// When the last counted check started, so one check is never counted twice.
    last_check: Option<DateTime<Utc>>,
    /// The longest gap still counted as watched.
    max_gap_ms: i64,
    /// The minute being filled.
    open: Minute,
    /// Its latencies.
    latencies: Vec<f32>,
}

impl Tracker {
    /// A tracker for a component probed every `interval_seconds`.
    pub fn new(interval_seconds: f64) -> Tracker {
        Tracker {
            status: ComponentStatus::Unknown,
            since_ms: None,
            checks_total: 0,
            failures_total: 0,
            last_check: None,
            max_gap_ms: (interval_seconds * 1000.0).min(86_400_000.0) as i64 + MAX_GAP_MS,
            open: Minute::empty(i64::MIN),
            latencies: Vec::new(),
        }
    }

    /// Counts the time up to `now_ms` under the status held, then takes the
    /// component's new state. Answers the minutes this closed.
    pub fn observe(&mut self, c: &Component, now_ms: i64) -> Vec<Minute> {
        self.max_gap_ms = (c.interval_seconds * 1000.0).min(86_400_000.0) as i64 + MAX_GAP_MS;
        let mut closed = self.advance(now_ms);
        // A reload restarts the counters: what they hold then is all new.
        let (checks, failures) = if c.checks_total < self.checks_total {
            (c.checks_total, c.failures_total.min(c.checks_total))
        } else {
            (
                c.checks_total - self.checks_total,
                c.failures_total.saturating_sub(self.failures_total),
            )
        };
        self.checks_total = c.checks_total;
        self.failures_total = c.failures_total;
        let minute = now_ms.div_euclid(MINUTE_MS);
        if checks > 0 {
            closed.extend(self.open_minute(minute));
            self.open.checks = self.open.checks.saturating_add(checks as u32);
            self.open.failures = self
                .open
                .failures
                .saturating_add(failures.min(checks) as u32);
            if c.last_check != self.last_check
                && let Some(ms) = c.latency_ms.filter(|v| v.is_finite() && *v >= 0.0)
                && self.latencies.len() < MAX_LATENCIES
            {
                self.latencies.push(ms as f32);
            }
        }
        self.last_check = c.last_check;
        self.status = c.status;
        closed
    }

    /// Counts the time up to `now_ms` and closes the minutes before it.
    pub fn advance(&mut self, now_ms: i64) -> Vec<Minute> {
        let mut closed = Vec::new();
        let Some(mut since) = self.since_ms else {
            self.since_ms = Some(now_ms);
            return closed;
        };
        if now_ms < since {
            // The clock stepped back: what lies between was counted already. Time
            // is counted again once the clock passes `since`.
            return closed;
        }
        let counted = self.status != ComponentStatus::Unknown
            && now_ms >= since
            && now_ms - since <= self.max_gap_ms;
        if counted {
            while since < now_ms {
                let minute = since.div_euclid(MINUTE_MS);
                let end = now_ms.min((minute + 1) * MINUTE_MS);
                closed.extend(self.open_minute(minute));
                let span = (end - since) as u32;
                self.open.known_ms = (self.open.known_ms + span).min(MINUTE_MS as u32);
                if self.status == ComponentStatus::Down {
                    self.open.down_ms = (self.open.down_ms + span).min(self.open.known_ms);
                }
                since = end;
            }
        }
        self.since_ms = Some(now_ms);
        closed.extend(self.close_before(now_ms.div_euclid(MINUTE_MS)));
        closed
    }

    /// Makes `minute` the open one, answering the one it replaces if it held
    /// anything.
    fn open_minute(&mut self, minute: i64) -> Option<Minute> {
        if self.open.minute == minute {
            return None;
        }
        let old = std::mem::replace(&mut self.open, Minute::empty(minute));
        let lat = std::mem::take(&mut self.latencies);
        finish(old, lat)
    }

    /// Closes the open minute if it is before `minute`.
    fn close_before(&mut self, minute: i64) -> Option<Minute> {
        if self.open.minute >= minute {
            return None;
        }
        self.open_minute(minute)
    }

    /// The status held.
    pub fn status(&self) -> ComponentStatus {
        self.status
    }

    /// The minute being filled, as far as it goes (latency left out).
    pub fn current(&self) -> Option<Minute> {
        (self.open.minute != i64::MIN && (self.open.checks > 0 || self.open.known_ms > 0))
            .then_some(self.open)
    }

    /// Closes the open minute whatever it is (a stop).
    pub fn flush(&mut self) -> Option<Minute> {
        let next = self.open.minute.saturating_add(1);
        self.open_minute(next)
    }
}

/// A minute with its latency quantiles, `None` when it holds nothing.
fn finish(mut m: Minute, mut lat: Vec<f32>) -> Option<Minute> {
    if m.minute == i64::MIN || (m.checks == 0 && m.known_ms == 0) {
        return None;
    }
    if !lat.is_empty() {
        lat.sort_by(f32::total_cmp);
        // Nearest rank, as a person reads "95 % of checks took at most this".
        let n = lat.len();
        let q = |p: f64| lat[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        m.latency = Some([lat[0], q(0.5), q(0.95), lat[lat.len() - 1]]);
    }
    Some(m)
}

/// The history's files.
#[derive(Debug, Clone)]
pub struct Disk {
    /// `<state_dir>/history/minutes`.
    dir: PathBuf,
}

/// What loading found wrong, one sentence each.
pub type Problems = Vec<String>;

impl Disk {
    /// The files under `state_dir`.
    pub fn new(state_dir: &Path) -> Disk {
        Disk {
            dir: state_dir.join("history").join("minutes"),
        }
    }

    fn file(&self, component: &str, day: i64) -> PathBuf {
        // A prefix, so that a component named ".." stays a name.
        self.dir
            .join(format!("p-{component}"))
            .join(format!("{}.bin", date(day).format("%Y-%m-%d")))
    }

    /// Appends minutes (any components, any days) and syncs the files, taking out of
    /// `minutes` what was written. A file whose write fails is cut back to where it
    /// was, so a retry never lands in the middle of a record; its minutes, and those
    /// of the files after it, stay in `minutes`.
    pub fn append(&self, minutes: &mut Vec<(String, Minute)>) -> std::io::Result<()> {
        let mut by_file: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for (c, m) in minutes.iter() {
            by_file
                .entry(self.file(c, day_of_minute(m.minute)))
                .or_default()
                .extend_from_slice(&m.encode());
        }
        let mut result = Ok(());
        let mut written = std::collections::BTreeSet::new();
        for (path, bytes) in by_file {
            match append_file(&path, &bytes) {
                Ok(()) => {
                    written.insert(path);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        minutes.retain(|(c, m)| !written.contains(&self.file(c, day_of_minute(m.minute))));
        result
    }

    /// Reads every component's kept days, deleting days past [`KEEP_DAYS`]; what
    /// could not be read is kept aside and said.
    pub fn load(&self, today: i64) -> (BTreeMap<String, ComponentHistory>, Problems) {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return (out, problems);
        };
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some(component) = name.strip_prefix("p-") else {
                continue;
            };
            let mut files: Vec<(i64, PathBuf)> = std::fs::read_dir(d.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| {
                    let n = f.file_name().to_string_lossy().into_owned();
                    let day =
                        NaiveDate::parse_from_str(n.strip_suffix(".bin")?, "%Y-%m-%d").ok()?;
                    let day = day
                        .and_hms_opt(0, 0, 0)?
                        .and_utc()
                        .timestamp()
                        .div_euclid(86_400);
                    Some((day, f.path()))
                })
                .collect();
            files.sort();
            let h: &mut ComponentHistory = out.entry(component.to_string()).or_default();
            for (day, path) in files {
                if day <= today - KEEP_DAYS {
                    if let Err(e) = std::fs::remove_file(&path) {
                        problems.push(format!("cannot delete {}: {e}", path.display()));
                    }
                    continue;
                }
                match read_file(&path, day) {
                    Ok((minutes, problem)) => {
                        for m in minutes {
                            h.add(m);
                        }
                        problems.extend(problem);
                    }
                    Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
                }
            }
        }
        (out, problems)
    }

    /// Deletes the files of days past [`KEEP_DAYS`], and the copies of them kept
    /// aside (`<day>.bin.unreadable-<time>`).
    pub fn prune(&self, today: i64) -> std::io::Result<()> {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for d in dirs.flatten() {
            if !d.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for f in std::fs::read_dir(d.path())?.flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                let Some(day) = n
                    .get(..10)
                    .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp().div_euclid(86_400))
                else {
                    continue;
                };
                if day <= today - KEEP_DAYS {
                    std::fs::remove_file(f.path())?;
                }
            }
        }
        Ok(())
    }
}

impl Disk {
    fn open_file(&self) -> PathBuf {
        self.dir.join("open.bin")
    }

    /// Replaces `open.bin` with the minutes being filled: what a SIGKILL would
    /// otherwise take with it. Each entry: the name's length (u8), the name, the
    /// record.
    pub fn write_open(&self, open: &[(String, Minute)]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(open.len() * 64);
        for (c, m) in open {
            let name = &c.as_bytes()[..c.len().min(255)];
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name);
            bytes.extend_from_slice(&m.encode());
        }
        std::fs::create_dir_all(&self.dir)?;
        crate::rules::manager::write_atomically(&self.open_file(), &bytes)
    }

    /// The minutes `open.bin` holds (those under way at a SIGKILL: it is rewritten
    /// after every append, so it never holds a minute the day files have), for the
    /// caller to add and write; a damaged file is kept aside.
    pub fn read_open(&self) -> (Vec<(String, Minute)>, Option<String>) {
        let path = self.open_file();
        let Ok(bytes) = std::fs::read(&path) else {
            return (Vec::new(), None);
        };
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let mut damaged = false;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n);
            if tail.len() < n + RECORD_BYTES {
                damaged = true;
                break;
            }
            let name = String::from_utf8_lossy(&tail[..n]).into_owned();
            let rec: &[u8; RECORD_BYTES] = tail[n..n + RECORD_BYTES]
                .try_into()
                .unwrap_or(&[0; RECORD_BYTES]);
            rest = &tail[n + RECORD_BYTES..];
            let Some(m) = Minute::decode(rec) else {
                damaged = true;
                continue;
            };
            out.push((name, m));
        }
        let problem = damaged.then(|| {
            let aside = crate::clock::aside_path(&path);
            let kept = std::fs::rename(&path, &aside).map_or_else(
                |e| format!("could not be kept aside: {e}"),
                |()| format!("kept as {}", aside.display()),
            );
            format!(
                "{} was damaged (the minutes under way at the last stop); {kept}",
                path.display()
            )
        });
        (out, problem)
    }
}

/// Appends `bytes` to `path` on a record boundary (a torn tail left by a write that
/// failed or a SIGKILL is cut first), synced; on failure cuts the file back.
fn append_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let aligned = len - len % RECORD_BYTES as u64;
    if aligned != len {
        tracing::warn!(message = "A history file ended in a torn record; it is cut back.", file = %path.display(), bytes = len - aligned);
        f.set_len(aligned)?;
    }
    let written = f.write_all(bytes).and_then(|()| f.sync_data());
    if written.is_err() {
        let _ = f.set_len(aligned);
    }
    written
}

/// One day file's records in file order, and what was wrong with it: records whose
/// CRC fails and a torn tail are left out, the file copied aside and rewritten with
/// the rest.
fn read_file(path: &Path, day: i64) -> std::io::Result<(Vec<Minute>, Option<String>)> {
    let minutes_of_day = day * 24 * 60..(day + 1) * 24 * 60;
    let bytes = std::fs::read(path)?;
    let mut minutes = Vec::with_capacity(bytes.len() / RECORD_BYTES);
    let mut bad = 0usize;
    let chunks = bytes.chunks_exact(RECORD_BYTES);
    let torn = chunks.remainder().len();
    for c in chunks {
        let rec: &[u8; RECORD_BYTES] = c.try_into().unwrap_or(&[0; RECORD_BYTES]);
        // A record of another day in this day's file was not written here.
        match Minute::decode(rec).filter(|m| minutes_of_day.contains(&m.minute)) {
            Some(m) => minutes.push(m),
            None => bad += 1,
        }
    }
    if bad == 0 && torn == 0 {
        return Ok((minutes, None));
    }
    let aside = crate::clock::aside_path(path);
    std::fs::copy(path, &aside)?;
    let good: Vec<u8> = minutes.iter().flat_map(|m| m.encode()).collect();
    crate::rules::manager::write_atomically(path, &good)?;
    let mut what = Vec::new();
    if bad > 0 {
        what.push(format!("{bad} damaged record(s)"));
    }
    if torn > 0 {
        what.push(format!("a torn last record ({torn} bytes)"));
    }
    let problem = format!(
        "{} had {}; kept as {}, the {} good record(s) kept",
        path.display(),
        what.join(" and "),
        aside.display(),
        minutes.len()
    );
    tracing::warn!(message = "A history file was partly unreadable; it is kept aside.", problem = %problem);
    Ok((minutes, Some(problem)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn component(status: ComponentStatus, checks: u64, failures: u64, ms: f64) -> Component {
        let mut c = Component::new(
            "db",
            "postgres",
            "x".into(),
            true,
            Duration::from_secs(1),
            Duration::from_millis(500),
        );
        c.status = status;
        c.checks_total = checks;
        c.failures_total = failures;
        c.latency_ms = Some(ms);
        c.last_check = DateTime::from_timestamp(checks as i64, 0);
        c
    }

    #[test]
    fn a_record_round_trips_and_a_flipped_bit_is_refused() {
        let m = Minute {
            minute: 29_000_000,
            checks: 60,
            failures: 3,
            down_ms: 4_000,
            known_ms: 60_000,
            latency: Some([0.5, 1.25, 9.0, 40.0]),
        };
        let b = m.encode();
        assert_eq!(Minute::decode(&b), Some(m));
        for bit in [0, 37, 100, 200, 255] {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Minute::decode(&d), None, "bit {bit}");
        }
        let none = Minute { latency: None, ..m };
        assert_eq!(Minute::decode(&none.encode()), Some(none));
    }

    #[test]
    fn downtime_is_time_weighted_across_minute_boundaries_and_gaps_are_unknown() {
        let mut t = Tracker::new(1.0);
        let base = 1_000 * MINUTE_MS;
        let mut closed = Vec::new();
        // First sight at :30, ok; down at :45 of the same minute; still down at :15
        // of the next; ok again at :20.
        closed.extend(t.observe(&component(ComponentStatus::Ok, 1, 0, 2.0), base + 30_000));
        closed.extend(t.observe(
            &component(ComponentStatus::Down, 2, 1, 500.0),
            base + 45_000,
        ));
        closed.extend(t.observe(
            &component(ComponentStatus::Down, 3, 2, 500.0),
            base + 75_000,
        ));
        closed.extend(t.observe(&component(ComponentStatus::Ok, 4, 2, 3.0), base + 80_000));
        assert_eq!(closed.len(), 1);
        let first = closed[0];
        assert_eq!((first.minute, first.checks, first.failures), (1_000, 2, 1));
        assert_eq!((first.known_ms, first.down_ms), (30_000, 15_000));
        assert_eq!(first.latency, Some([2.0, 2.0, 500.0, 500.0]));
        // Then nothing for five minutes (Vigil stopped): unknown, not up.
        let closed = t.advance(base + 7 * MINUTE_MS);
        assert_eq!(closed.len(), 1);
        let second = closed[0];
        assert_eq!(
            (second.minute, second.checks, second.failures),
            (1_001, 2, 1)
        );
        assert_eq!((second.known_ms, second.down_ms), (20_000, 20_000));
        let mut h = ComponentHistory::default();
        h.add(first);
        h.add(second);
        assert_eq!(h.uptime(day_of_minute(1_001), 1), Some(1.0 - 35.0 / 50.0));
    }

    #[test]
    fn a_reload_restarting_the_counters_counts_what_they_hold() {
        let mut t = Tracker::new(1.0);
        t.observe(&component(ComponentStatus::Ok, 100, 10, 1.0), 0);
        let m = t.flush().unwrap();
        assert_eq!((m.checks, m.failures), (100, 10));
        t.observe(
            &component(ComponentStatus::Ok, 2, 1, 1.0),
            MINUTE_MS + 1_000,
        );
        let m = t.flush().unwrap();
        assert_eq!((m.checks, m.failures), (2, 1));
    }

    #[test]
    fn a_damaged_record_and_a_torn_tail_cost_only_themselves_and_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        let day = 20_000;
        let minutes: Vec<(String, Minute)> = (0..5)
            .map(|i| {
                let mut m = Minute::empty(day * 1440 + i);
                m.known_ms = 60_000;
                m.checks = 1;
                ("db".to_string(), m)
            })
            .collect();
        disk.append(&mut minutes.clone()).unwrap();
        let path = disk.file("db", day);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD_BYTES + 3] ^= 0x40;
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (h, problems) = disk.load(day);
        assert_eq!(h["db"].recent.len(), 4);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("1 damaged record(s) and a torn last record (3 bytes)"));
        let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().contains(".unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes);
        // Rewritten: the next load finds nothing wrong.
        let (h, problems) = disk.load(day);
        assert_eq!((h["db"].recent.len(), problems.len()), (4, 0));
    }

    #[test]
    fn a_clock_stepped_back_never_counts_a_span_twice() {
        let mut t = Tracker::new(1.0);
        let base = 1_000 * MINUTE_MS;
        let ok = |n| component(ComponentStatus::Ok, n, 0, 1.0);
        t.observe(&ok(1), base);
        t.observe(&ok(2), base + 50_000);
        // Stepped back 30 s, then ticking on past the minute.
        for (i, at) in [20_000, 30_000, 40_000, 50_000, 59_000]
            .into_iter()
            .enumerate()
        {
            t.observe(&ok(3 + i as u64), base + at);
        }
        let m = t.flush().unwrap();
        assert!(m.known_ms <= 60_000, "{m:?}");
        assert_eq!(Minute::decode(&m.encode()), Some(m));
    }

    #[test]
    fn a_minute_from_the_future_does_not_freeze_the_chart() {
        let mut h = ComponentHistory::default();
        let at = |minute| Minute {
            known_ms: 60_000,
            ..Minute::empty(minute)
        };
        h.add(at(5_000_000));
        h.add(at(1_000));
        h.add(at(1_001));
        assert_eq!(h.recent.back().map(|m| m.minute), Some(1_001));
    }

    #[test]
    fn a_record_outside_its_days_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        let day = 20_000;
        disk.append(&mut vec![(
            "db".to_string(),
            Minute {
                known_ms: 1,
                ..Minute::empty(day * 1440)
            },
        )])
        .unwrap();
        // A record of another day in this day's file.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(disk.file("db", day))
            .unwrap();
        f.write_all(
            &Minute {
                known_ms: 1,
                ..Minute::empty((day + 400) * 1440)
            }
            .encode(),
        )
        .unwrap();
        let (h, problems) = disk.load(day);
        assert_eq!(h["db"].recent.len(), 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn an_append_after_a_torn_write_starts_on_a_record_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        let day = 20_000;
        let m = |i| {
            (
                "db".to_string(),
                Minute {
                    known_ms: 1,
                    ..Minute::empty(day * 1440 + i)
                },
            )
        };
        disk.append(&mut vec![m(0)]).unwrap();
        let path = disk.file("db", day);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[9; 5]).unwrap();
        let mut batch = vec![m(1)];
        disk.append(&mut batch).unwrap();
        assert!(batch.is_empty(), "what was written leaves the batch");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * RECORD_BYTES as u64
        );
    }

    #[test]
    fn pruning_while_running_skips_open_bin_and_takes_old_copies_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        let today = 20_100;
        let old = today - KEEP_DAYS;
        disk.append(&mut vec![("db".to_string(), Minute::empty(old * 1440))])
            .unwrap();
        disk.write_open(&[]).unwrap();
        let aside = disk
            .file("db", old)
            .with_extension("bin.unreadable-20260101T000000.000Z");
        std::fs::write(&aside, b"x").unwrap();
        disk.prune(today).unwrap();
        assert!(!disk.file("db", old).exists());
        assert!(!aside.exists());
        assert!(disk.open_file().exists());
    }

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn every_record_reads_back_as_written(
                minute in 0i64..i64::from(u32::MAX),
                checks in 0u32..=65_535,
                failures in 0u32..=65_535,
                known in 0u32..=60_000,
                down in 0u32..=60_000,
                lat in proptest::option::of(proptest::array::uniform4(0f32..1e9)),
            ) {
                let m = Minute {
                    minute,
                    checks,
                    failures: failures.min(checks),
                    down_ms: down.min(known),
                    known_ms: known,
                    latency: lat,
                };
                prop_assert_eq!(Minute::decode(&m.encode()), Some(m));
            }

            #[test]
            fn whatever_the_files_hold_reading_them_never_panics(
                bytes in proptest::collection::vec(any::<u8>(), 0..700),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let disk = Disk::new(dir.path());
                let day = disk.file("db", 20_000);
                std::fs::create_dir_all(day.parent().unwrap()).unwrap();
                std::fs::write(&day, &bytes).unwrap();
                std::fs::write(disk.open_file(), &bytes).unwrap();
                let (h, _) = disk.load(20_000);
                let (open, _) = disk.read_open();
                prop_assert!(h.get("db").map_or(0, |h| h.recent.len()) <= bytes.len() / RECORD_BYTES);
                prop_assert!(open.len() <= bytes.len() / RECORD_BYTES);
            }
        }
    }

    #[test]
    fn days_past_the_keep_are_deleted_and_a_day_costs_at_most_46_080_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        let today = 20_100;
        let full_day: Vec<(String, Minute)> = (0..1440)
            .map(|i| ("app".to_string(), Minute::empty(today * 1440 + i)))
            .collect();
        disk.append(&mut full_day.clone()).unwrap();
        assert_eq!(
            std::fs::metadata(disk.file("app", today)).unwrap().len(),
            46_080
        );
        let old = vec![("app".to_string(), Minute::empty((today - KEEP_DAYS) * 1440))];
        disk.append(&mut old.clone()).unwrap();
        assert!(disk.file("app", today - KEEP_DAYS).exists());
        let (h, _) = disk.load(today);
        assert!(!disk.file("app", today - KEEP_DAYS).exists());
        assert_eq!(h["app"].days.len(), 1);
    }
}
