//! Silences: matchers, a start and an end, who and why. Created through the API
//! (`POST /api/silences`) or `vigil silence add`, persisted in the state directory,
//! and over by themselves at their end.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::matcher::{Matcher, all_match};

/// How long an expired silence stays listed (as Alertmanager keeps them).
pub(crate) const KEEP_EXPIRED: chrono::Duration = chrono::Duration::hours(24);

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// Its id (random, hex).
    pub id: String,
    /// Which alerts it mutes: all matchers must match.
    pub matchers: Vec<Matcher>,
    /// When it starts muting.
    pub starts_at: DateTime<Utc>,
    /// When it stops.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was created or last expired.
    pub updated_at: DateTime<Utc>,
}

/// A silence as asked for: Alertmanager's field names, or the short ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewSilence {
    /// Which alerts to mute.
    pub matchers: Vec<Matcher>,
    /// When to start; now when absent.
    #[serde(default, alias = "start")]
    pub starts_at: Option<DateTime<Utc>>,
    /// When to end.
    #[serde(alias = "end")]
    pub ends_at: DateTime<Utc>,
    /// Who asks.
    #[serde(alias = "author")]
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Where a silence is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Not started yet.
    Pending,
    /// Muting.
    Active,
    /// Over.
    Expired,
}

impl NewSilence {
    /// A silence with a fresh id, or why the request is refused.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Silence, String> {
        if self.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if self.matchers.iter().all(|m| m.matches("")) {
            return Err(
                "these matchers would also match alerts without those labels; add at least one matcher that needs a value (like alertname=\"…\")"
                    .into(),
            );
        }
        let starts_at = self.starts_at.unwrap_or(now).max(now);
        for (name, t) in [("startsAt", starts_at), ("endsAt", self.ends_at)] {
            if !crate::clock::accepted(t) {
                return Err(format!(
                    "{name} {} is after {}, the latest time a silence can hold",
                    t.to_rfc3339(),
                    crate::clock::latest().to_rfc3339()
                ));
            }
        }
        if self.ends_at <= starts_at {
            return Err(format!(
                "endsAt {} must be after startsAt {} and after now",
                self.ends_at.to_rfc3339(),
                starts_at.to_rfc3339()
            ));
        }
        if self.created_by.trim().is_empty() {
            return Err("createdBy (author) must not be empty".into());
        }
        if self.comment.trim().is_empty() {
            return Err("comment must say why the alerts are silenced".into());
        }
        Ok(Silence {
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            matchers: self.matchers,
            starts_at,
            ends_at: self.ends_at,
            created_by: self.created_by,
            comment: self.comment,
            updated_at: now,
        })
    }
}

impl Silence {
    /// Its state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether it mutes an alert with these labels at `now`.
    pub fn mutes<'a>(&self, get: impl Fn(&str) -> &'a str, now: DateTime<Utc>) -> bool {
        self.state(now) == SilenceState::Active && all_match(&self.matchers, get)
    }

    /// Whether it can be forgotten at `now`.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now >= crate::clock::plus(self.ends_at, KEEP_EXPIRED)
    }
}

/// Why a silence request failed.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// The request is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// No silence has that id (404).
    #[error("no silence has the id {0:?}")]
    NotFound(String),
    /// The state directory refused the write (500).
    #[error("cannot store the silence: {0}")]
    Storage(String),
}

/// The silences kept in `outbox`, stale ones forgotten (and deleted), oldest first.
fn read(
    outbox: &crate::notify::outbox::Outbox,
    now: DateTime<Utc>,
) -> Result<Vec<Silence>, SilenceError> {
    let mut list: Vec<Silence> = outbox
        .silences()
        .map_err(|e| SilenceError::Storage(e.to_string()))?
        .into_iter()
        .filter_map(|(id, bytes)| match serde_json::from_slice(&bytes) {
            Ok(s) => Some(s),
            // Left in place, for a person to look at; it mutes nothing.
            Err(e) => {
                tracing::error!(message = "A stored silence cannot be read; it is ignored.", id = %id, error = %e);
                None
            }
        })
        .collect();
    for s in list.iter().filter(|s| s.is_stale(now)) {
        let _ = outbox.delete_silence(&s.id);
    }
    list.retain(|s| !s.is_stale(now));
    list.sort_by_key(|s| s.updated_at);
    Ok(list)
}

/// The silences, kept in memory and persisted in the outbox database.
pub struct SilenceStore {
    /// Where they persist.
    outbox: std::sync::Arc<crate::notify::outbox::Outbox>,
    /// The silences, newest last.
    list: std::sync::Mutex<Vec<Silence>>,
    /// Woken on every change, so the router applies it at once.
    pub changed: tokio::sync::Notify,
}

impl SilenceStore {
    /// The silences kept in `outbox`, stale ones forgotten.
    pub fn open(
        outbox: std::sync::Arc<crate::notify::outbox::Outbox>,
        now: DateTime<Utc>,
    ) -> Result<SilenceStore, SilenceError> {
        let list = read(&outbox, now)?;
        Ok(SilenceStore {
            outbox,
            list: std::sync::Mutex::new(list),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Reads the silences from the outbox again (it merged in a file it could not
    /// read at the start, with the silences set before the restart).
    pub fn reload(&self, now: DateTime<Utc>) -> Result<(), SilenceError> {
        let list = read(&self.outbox, now)?;
        *self.lock() = list;
        self.changed.notify_one();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Silence>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every silence not yet forgotten.
    pub fn list(&self) -> Vec<Silence> {
        self.lock().clone()
    }

    /// Stores `s` in the outbox database on a blocking thread: a commit syncs the
    /// disk, which must not hold up the runtime's threads (the API, the router).
    async fn persist(&self, s: &Silence) -> Result<(), SilenceError> {
        let outbox = self.outbox.clone();
        let s = s.clone();
        let bytes = serde_json::to_vec(&s).map_err(|e| SilenceError::Storage(e.to_string()))?;
        match tokio::task::spawn_blocking(move || outbox.put_silence(&s.id, &bytes)).await {
            Ok(r) => r.map_err(|e| SilenceError::Storage(e.to_string())),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SilenceError::Storage("the daemon is stopping".into())),
        }
    }

    /// Adds a silence (persisted before it is answered).
    pub async fn add(&self, new: NewSilence, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let s = new.validate(now).map_err(SilenceError::Invalid)?;
        self.persist(&s).await?;
        {
            // A reload meanwhile may have read it from the outbox already.
            let mut list = self.lock();
            list.retain(|x| x.id != s.id);
            list.push(s.clone());
        }
        self.changed.notify_one();
        tracing::info!(message = "Silence added.", id = %s.id, matchers = %s.matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","), ends_at = %s.ends_at, created_by = %s.created_by, comment = %s.comment);
        Ok(s)
    }

    /// Ends a silence now. The list's lock is never held across the commit: the
    /// ended silence is made under it, stored without it, then put in place.
    pub async fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let mut updated = self
            .lock()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        updated.ends_at = updated.ends_at.min(now);
        updated.starts_at = updated.starts_at.min(updated.ends_at);
        updated.updated_at = now;
        self.persist(&updated).await?;
        if let Some(s) = self.lock().iter_mut().find(|s| s.id == id) {
            *s = updated.clone();
        }
        self.changed.notify_one();
        tracing::info!(message = "Silence expired.", id = %id);
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn new(json: &str) -> Result<Silence, String> {
        serde_json::from_str::<NewSilence>(json)
            .map_err(|e| e.to_string())?
            .validate(t(0))
    }

    #[test]
    fn a_silence_mutes_between_its_start_and_end() {
        let s = new(&format!(
            r#"{{"matchers":["alertname=\"CacheDown\""],"start":"{}","end":"{}","author":"ana","comment":"failover"}}"#,
            t(60).to_rfc3339(),
            t(120).to_rfc3339()
        ))
        .unwrap();
        let cache = |n: &str| if n == "alertname" { "CacheDown" } else { "" };
        let other = |n: &str| if n == "alertname" { "AppDown" } else { "" };
        assert!(!s.mutes(cache, t(59)), "pending");
        assert!(s.mutes(cache, t(60)));
        assert!(!s.mutes(other, t(60)));
        assert!(!s.mutes(cache, t(120)), "over by itself");
        assert_eq!(s.state(t(120)), SilenceState::Expired);
    }

    #[test]
    fn requests_that_would_mute_too_much_or_nothing_are_refused() {
        let end = t(60).to_rfc3339();
        assert_eq!(
            new(&format!(
                r#"{{"matchers":["x=~\".*\""],"endsAt":"{end}","createdBy":"a","comment":"c"}}"#
            ))
            .unwrap_err(),
            "these matchers would also match alerts without those labels; add at least one matcher that needs a value (like alertname=\"…\")"
        );
        assert!(
            new(&format!(
                r#"{{"matchers":["a=\"b\""],"endsAt":"{}","createdBy":"a","comment":"c"}}"#,
                t(-1).to_rfc3339()
            ))
            .unwrap_err()
            .starts_with("endsAt ")
        );
        assert_eq!(
            new(&format!(
                r#"{{"matchers":["a=\"b\""],"endsAt":"{end}","createdBy":"a","comment":" "}}"#
            ))
            .unwrap_err(),
            "comment must say why the alerts are silenced"
        );
    }

    #[test]
    fn a_silence_past_the_year_9999_is_refused_and_one_already_stored_does_not_panic() {
        let e = new(
            r#"{"matchers":["a=\"b\""],"endsAt":"+262142-12-31T23:00:00Z","createdBy":"a","comment":"c"}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "endsAt +262142-12-31T23:00:00+00:00 is after 9999-12-31T23:59:59.999+00:00"
            ),
            "{e}"
        );
        // Stored by an earlier version: read, listed, never stale, no panic.
        let mut s = new(&format!(
            r#"{{"matchers":["a=\"b\""],"endsAt":"{}","createdBy":"a","comment":"c"}}"#,
            t(60).to_rfc3339()
        ))
        .unwrap();
        s.ends_at = DateTime::<Utc>::MAX_UTC;
        assert!(!s.is_stale(t(0)));
        let dir = tempfile::tempdir().unwrap();
        let outbox = std::sync::Arc::new(crate::notify::outbox::Outbox::open(dir.path()).unwrap());
        outbox
            .put_silence(&s.id, &serde_json::to_vec(&s).unwrap())
            .unwrap();
        let store = SilenceStore::open(outbox, t(0)).unwrap();
        assert_eq!(store.list().len(), 1);
    }

    mod round_trip {
        use super::*;
        use crate::route::matcher::Op;
        use proptest::prelude::*;

        fn time() -> impl Strategy<Value = DateTime<Utc>> {
            (crate::clock::EARLIEST_MS..=crate::clock::LATEST_MS).prop_map(crate::clock::at_ms)
        }

        proptest! {
        #[test]
        fn every_stored_silence_reads_back(starts in time(), ends in time(), by in any::<String>(), comment in any::<String>(), value in any::<String>()) {
            let s = Silence {
                id: "0".into(),
                matchers: vec![Matcher::new("alertname", Op::Equal, &value).unwrap()],
                starts_at: starts,
                ends_at: ends,
                created_by: by,
                comment,
                updated_at: starts,
            };
            let back: Silence = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
            prop_assert_eq!(&back, &s);
            // Nothing a stored silence holds can panic its checks.
            let _ = back.is_stale(DateTime::<Utc>::MAX_UTC);
            let _ = back.state(DateTime::<Utc>::MIN_UTC);
        }

        }
    }
}
