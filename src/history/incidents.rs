//! The incident log: each alert's firing and resolve, the pages sent for it
//! (receiver, delivered or not, when), and what held it back (silences with who set
//! them and why, maintenance windows, inhibition, the lease), kept [`KEEP_DAYS`]
//! days.
//!
//! One JSON line per entry, appended and synced, in one file per UTC day
//! (`history/incidents/<YYYY-MM-DD>.jsonl`); a day past the keep is a file deleted.
//! A line that cannot be read (a torn last line after a SIGKILL, a damaged one) costs
//! that line only: the file is copied aside (`<file>.unreadable-<time>`), rewritten
//! with the lines that could be read, and the problem shown in `/status`.
//!
//! Alerts whose `severity` is `none` (the Watchdog) are the alerting pipeline's own
//! heartbeat, not incidents: they never enter the log.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use super::minutes::KEEP_DAYS;

/// Incidents kept in memory (the newest); older ones stay in the files.
pub const IN_MEMORY: usize = 500;

/// Entries that wait in memory at most while the disk cannot be written.
pub const MAX_UNWRITTEN: usize = 10_000;

/// Pages and mutes kept per incident: a long flapping alert's reminders past this
/// are counted, not listed.
pub const PER_INCIDENT: usize = 50;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The alert's alarm name (`<environment>-<alertname>-<fingerprint>`), as the
    /// pages carry it.
    pub alarm: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// The alert started firing.
    Fired {
        /// `alertname`.
        alertname: String,
        /// `severity`.
        severity: String,
        /// The summary annotation.
        summary: String,
        /// The runbook annotation, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runbook_url: Option<String>,
        /// Other names the same alert is paged under (with this task's `task`
        /// label, for per-task alerts).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
    },
    /// It stopped firing.
    Resolved,
    /// A notification about it left, or failed to.
    Page {
        /// The integration, `receiver/kind`.
        target: String,
        /// Whether it said firing (else resolved).
        firing: bool,
        /// Delivered; else `error` says why not.
        delivered: bool,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// It was held back.
    Muted {
        /// By what, as a sentence: "silence 3f2a… by alice until …: deploying".
        why: String,
        /// Who set it, when a person did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Until when, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
    },
    /// It is held back no longer.
    Unmuted,
}

/// A page, as an incident lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// When.
    pub at: DateTime<Utc>,
    /// The integration, `receiver/kind`.
    pub target: String,
    /// Firing or resolved.
    pub firing: bool,
    /// Delivered or not.
    pub delivered: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A time it was held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mute {
    /// From when.
    pub at: DateTime<Utc>,
    /// Until when it was released, if it was.
    pub released: Option<DateTime<Utc>>,
    /// By what.
    pub why: String,
    /// Who set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Until when it was set to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// One alert's firing, from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The alarm name.
    pub alarm: String,
    /// Other alarm names of the same alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `alertname`.
    pub alertname: String,
    /// `severity`.
    pub severity: String,
    /// The summary.
    pub summary: String,
    /// The runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// When it started firing.
    pub fired_at: DateTime<Utc>,
    /// When it resolved; `None` while it fires.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The pages, oldest first (at most [`PER_INCIDENT`]).
    pub pages: Vec<Page>,
    /// Pages past [`PER_INCIDENT`].
    #[serde(default)]
    pub more_pages: usize,
    /// When it was held back, oldest first.
    pub mutes: Vec<Mute>,
}

impl Incident {
    /// Whether the alarm name is this incident's.
    pub fn is(&self, alarm: &str) -> bool {
        self.alarm == alarm || self.aliases.iter().any(|a| a == alarm)
    }
}

/// The log in memory and on disk.
#[derive(Debug)]
pub struct Log {
    /// `<state_dir>/history/incidents`.
    dir: PathBuf,
    /// The newest incidents, oldest first.
    incidents: VecDeque<Incident>,
    /// Entries not yet written (a write failed; retried with the next).
    unwritten: Vec<Entry>,
    /// Entries dropped unwritten.
    lost: u64,
}

impl Log {
    /// An empty log kept under `state_dir`.
    pub fn new(state_dir: &Path) -> Log {
        Log {
            dir: state_dir.join("history").join("incidents"),
            incidents: VecDeque::new(),
            unwritten: Vec::new(),
            lost: 0,
        }
    }

    /// The incidents, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter().rev()
    }

    /// The open incident of `alarm`, if one fires.
    pub fn open(&self, alarm: &str) -> Option<&Incident> {
        self.incidents
            .iter()
            .rev()
            .find(|i| i.is(alarm) && i.resolved_at.is_none())
    }

    /// Records an entry: in memory now, on disk at the next [`Log::write`]. While
    /// the disk fails, at most [`MAX_UNWRITTEN`] wait; past that the oldest are lost
    /// (counted in [`Log::lost`]).
    pub fn record(&mut self, e: Entry) {
        self.apply(&e);
        self.unwritten.push(e);
        if self.unwritten.len() > MAX_UNWRITTEN {
            let excess = self.unwritten.len() - MAX_UNWRITTEN;
            self.unwritten.drain(..excess);
            self.lost += excess as u64;
        }
    }

    /// Entries dropped unwritten because the disk failed for too long.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Writes what was recorded since the last write, synced, one day file at a
    /// time. A file whose write fails is cut back to where it was (a retry never
    /// lands in the middle of a line); its entries and the later files' wait for
    /// the next write.
    pub fn write(&mut self) -> std::io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let mut by_day: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for e in &self.unwritten {
            let line = by_day.entry(self.file(e.at.date_naive())).or_default();
            if serde_json::to_writer(&mut *line, e).is_ok() {
                line.push(b'\n');
            }
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut result = Ok(());
        let mut written = std::collections::BTreeSet::new();
        for (path, bytes) in by_day {
            match append_lines(&path, &bytes) {
                Ok(()) => {
                    written.insert(path);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let dir = self.dir.clone();
        let file = |d: NaiveDate| dir.join(format!("{}.jsonl", d.format("%Y-%m-%d")));
        self.unwritten
            .retain(|e| !written.contains(&file(e.at.date_naive())));
        result
    }

    /// Entries waiting to be written.
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    fn file(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("{}.jsonl", day.format("%Y-%m-%d")))
    }

    /// Applies an entry to the incidents in memory.
    fn apply(&mut self, e: &Entry) {
        match &e.what {
            What::Fired {
                alertname,
                severity,
                summary,
                runbook_url,
                aliases,
            } => {
                if self.open(&e.alarm).is_some() {
                    return;
                }
                self.incidents.push_back(Incident {
                    alarm: e.alarm.clone(),
                    aliases: aliases.clone(),
                    alertname: alertname.clone(),
                    severity: severity.clone(),
                    summary: summary.clone(),
                    runbook_url: runbook_url.clone(),
                    fired_at: e.at,
                    resolved_at: None,
                    pages: Vec::new(),
                    more_pages: 0,
                    mutes: Vec::new(),
                });
                // The oldest resolved ones go first: an incident still firing stays
                // (were it dropped, the next evaluation would log it fired again).
                while self.incidents.len() > IN_MEMORY {
                    match self.incidents.iter().position(|i| i.resolved_at.is_some()) {
                        Some(oldest) => self.incidents.remove(oldest),
                        None => self.incidents.pop_front(),
                    };
                }
            }
            What::Resolved => {
                if let Some(i) = self.latest_mut(&e.alarm, true) {
                    i.resolved_at = Some(e.at);
                    for m in i.mutes.iter_mut().filter(|m| m.released.is_none()) {
                        m.released = Some(e.at);
                    }
                }
            }
            What::Page {
                target,
                firing,
                delivered,
                error,
            } => {
                // A resolve's page comes after the resolve: the newest incident.
                if let Some(i) = self.latest_mut(&e.alarm, false) {
                    if i.pages.len() < PER_INCIDENT {
                        i.pages.push(Page {
                            at: e.at,
                            target: target.clone(),
                            firing: *firing,
                            delivered: *delivered,
                            error: error.clone(),
                        });
                    } else {
                        i.more_pages += 1;
                    }
                }
            }
            What::Muted { why, by, until } => {
                if let Some(i) = self.latest_mut(&e.alarm, true) {
                    for m in i.mutes.iter_mut().filter(|m| m.released.is_none()) {
                        m.released = Some(e.at);
                    }
                    if i.mutes.len() < PER_INCIDENT {
                        i.mutes.push(Mute {
                            at: e.at,
                            released: None,
                            why: why.clone(),
                            by: by.clone(),
                            until: *until,
                        });
                    }
                }
            }
            What::Unmuted => {
                if let Some(i) = self.latest_mut(&e.alarm, true) {
                    for m in i.mutes.iter_mut().filter(|m| m.released.is_none()) {
                        m.released = Some(e.at);
                    }
                }
            }
        }
    }

    /// The newest incident of `alarm` (only an open one when `open`).
    fn latest_mut(&mut self, alarm: &str, open: bool) -> Option<&mut Incident> {
        self.incidents
            .iter_mut()
            .rev()
            .find(|i| i.is(alarm) && (!open || i.resolved_at.is_none()))
    }

    /// Reads the kept days, deleting days past [`KEEP_DAYS`]; what could not be
    /// read is kept aside and said.
    pub fn load(&mut self, today: NaiveDate) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return problems;
        };
        let mut files: Vec<(NaiveDate, PathBuf)> = dir
            .flatten()
            .filter_map(|f| {
                let n = f.file_name().to_string_lossy().into_owned();
                let d = NaiveDate::parse_from_str(n.strip_suffix(".jsonl")?, "%Y-%m-%d").ok()?;
                Some((d, f.path()))
            })
            .collect();
        files.sort();
        for (day, path) in files {
            if (today - day).num_days() >= KEEP_DAYS {
                if let Err(e) = std::fs::remove_file(&path) {
                    problems.push(format!("cannot delete {}: {e}", path.display()));
                }
                continue;
            }
            match read_file(&path) {
                Ok((entries, problem)) => {
                    for e in &entries {
                        self.apply(e);
                    }
                    problems.extend(problem);
                }
                Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
            }
        }
        problems
    }

    /// Deletes the files of days past [`KEEP_DAYS`].
    pub fn prune(&self, today: NaiveDate) -> std::io::Result<()> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for f in dir.flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            // Day files and the copies of them kept aside (`<day>.jsonl.unreadable-…`).
            if let Some(d) = n
                .get(..10)
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                && (today - d).num_days() >= KEEP_DAYS
            {
                std::fs::remove_file(f.path())?;
            }
        }
        Ok(())
    }
}

/// Appends `bytes` (whole lines) to `path`, synced; a torn last line (a SIGKILL
/// mid-write) is ended first so the new lines start on their own; on failure the
/// file is cut back.
fn append_lines(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut prefix: &[u8] = &[];
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(std::io::SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            prefix = b"\n";
        }
    }
    let written = f
        .write_all(prefix)
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_data());
    if written.is_err() {
        let _ = f.set_len(len);
    }
    written
}

/// A day file's entries, and what was wrong with it.
fn read_file(path: &Path) -> std::io::Result<(Vec<Entry>, Option<String>)> {
    let bytes = std::fs::read(path)?;
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => bad.push(format!("line {}: {e}", n + 1)),
        }
    }
    if bad.is_empty() {
        return Ok((entries, None));
    }
    let aside = crate::clock::aside_path(path);
    std::fs::copy(path, &aside)?;
    let mut good = Vec::new();
    for e in &entries {
        if serde_json::to_writer(&mut good, e).is_ok() {
            good.push(b'\n');
        }
    }
    crate::rules::manager::write_atomically(path, &good)?;
    let problem = format!(
        "{} had {} unreadable line(s) ({}); kept as {}, the {} good line(s) kept",
        path.display(),
        bad.len(),
        bad.first().map(String::as_str).unwrap_or(""),
        aside.display(),
        entries.len()
    );
    tracing::warn!(message = "An incident log file was partly unreadable; it is kept aside.", problem = %problem);
    Ok((entries, Some(problem)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn fired(alarm: &str, t: &str) -> Entry {
        Entry {
            at: at(t),
            alarm: alarm.into(),
            what: What::Fired {
                alertname: "CacheDown".into(),
                severity: "critical".into(),
                summary: "Redis does not answer".into(),
                runbook_url: None,
                aliases: vec![format!("{alarm}-task")],
            },
        }
    }

    fn page(alarm: &str, t: &str, firing: bool) -> Entry {
        Entry {
            at: at(t),
            alarm: alarm.into(),
            what: What::Page {
                target: "critical/sns".into(),
                firing,
                delivered: true,
                error: None,
            },
        }
    }

    #[test]
    fn an_incident_gathers_its_pages_and_mutes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new(dir.path());
        log.record(fired("a", "2026-12-01T10:00:00Z"));
        log.record(page("a-task", "2026-12-01T10:00:01Z", true));
        log.record(Entry {
            at: at("2026-12-01T10:05:00Z"),
            alarm: "a".into(),
            what: What::Muted {
                why: "silence 1 by alice: deploying".into(),
                by: Some("alice".into()),
                until: Some(at("2026-12-01T11:00:00Z")),
            },
        });
        log.record(Entry {
            at: at("2026-12-02T00:10:00Z"),
            alarm: "a".into(),
            what: What::Resolved,
        });
        log.record(page("a", "2026-12-02T00:10:01Z", false));
        log.write().unwrap();
        let mut again = Log::new(dir.path());
        assert!(
            again
                .load(at("2026-12-02T01:00:00Z").date_naive())
                .is_empty()
        );
        let all: Vec<_> = again.newest_first().cloned().collect();
        assert_eq!(all, log.newest_first().cloned().collect::<Vec<_>>());
        let i = &all[0];
        assert_eq!(i.resolved_at, Some(at("2026-12-02T00:10:00Z")));
        assert_eq!(
            i.pages.iter().map(|p| p.firing).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(i.mutes[0].by.as_deref(), Some("alice"));
        assert_eq!(i.mutes[0].released, i.resolved_at);
        assert_eq!(
            std::fs::read_dir(dir.path().join("history/incidents"))
                .unwrap()
                .count(),
            2
        );
    }

    #[test]
    fn a_torn_line_costs_that_line_and_the_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new(dir.path());
        log.record(fired("a", "2026-12-01T10:00:00Z"));
        log.record(fired("b", "2026-12-01T10:00:00Z"));
        log.write().unwrap();
        let path = dir.path().join("history/incidents/2026-12-01.jsonl");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"at":"2026-12-01T10:01:00Z","ala"#);
        std::fs::write(&path, &bytes).unwrap();
        let mut again = Log::new(dir.path());
        let problems = again.load(at("2026-12-01T12:00:00Z").date_naive());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("1 unreadable line(s) (line 3:"),
            "{problems:?}"
        );
        assert_eq!(again.newest_first().count(), 2);
        assert!(
            again
                .load(at("2026-12-01T12:00:00Z").date_naive())
                .is_empty()
        );
    }

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

        fn time() -> impl Strategy<Value = DateTime<Utc>> {
            (0i64..crate::clock::LATEST_MS).prop_map(crate::clock::at_ms)
        }

        proptest! {
            #[test]
            fn every_entry_reads_back_as_written(
                at in time(),
                alarm in ".{0,40}",
                text in ".{0,80}",
                by in proptest::option::of(".{0,20}"),
                until in proptest::option::of(time()),
                kind in 0u8..5,
                flag in any::<bool>(),
            ) {
                let what = match kind {
                    0 => What::Fired { alertname: text.clone(), severity: text.clone(), summary: text.clone(), runbook_url: by.clone(), aliases: vec![alarm.clone()] },
                    1 => What::Resolved,
                    2 => What::Page { target: text.clone(), firing: flag, delivered: !flag, error: by.clone() },
                    3 => What::Muted { why: text.clone(), by: by.clone(), until },
                    _ => What::Unmuted,
                };
                let e = Entry { at, alarm, what };
                let line = serde_json::to_vec(&e).unwrap();
                prop_assert_eq!(serde_json::from_slice::<Entry>(&line).unwrap(), e);
            }

            #[test]
            fn whatever_a_day_file_holds_reading_it_never_panics(
                bytes in proptest::collection::vec(any::<u8>(), 0..1024),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let mut log = Log::new(dir.path());
                std::fs::create_dir_all(&log.dir).unwrap();
                std::fs::write(log.dir.join("2026-12-01.jsonl"), &bytes).unwrap();
                log.load("2026-12-01".parse().unwrap());
                prop_assert!(log.newest_first().count() <= bytes.len());
            }
        }
    }

    #[test]
    fn an_open_incident_is_never_pushed_out_by_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new(dir.path());
        log.record(fired("still-firing", "2026-12-01T00:00:00Z"));
        for i in 0..IN_MEMORY + 10 {
            let alarm = format!("a{i}");
            log.record(fired(&alarm, "2026-12-01T01:00:00Z"));
            log.record(Entry {
                at: at("2026-12-01T01:01:00Z"),
                alarm,
                what: What::Resolved,
            });
        }
        assert!(log.open("still-firing").is_some());
        assert!(log.newest_first().count() <= IN_MEMORY);
    }

    #[test]
    fn days_past_the_keep_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new(dir.path());
        log.record(fired("old", "2026-09-01T10:00:00Z"));
        log.record(fired("new", "2026-11-30T10:00:00Z"));
        log.write().unwrap();
        let mut again = Log::new(dir.path());
        again.load(at("2026-12-01T00:00:00Z").date_naive());
        assert_eq!(
            again
                .newest_first()
                .map(|i| i.alarm.as_str())
                .collect::<Vec<_>>(),
            ["new"]
        );
        assert!(
            !dir.path()
                .join("history/incidents/2026-09-01.jsonl")
                .exists()
        );
    }
}
