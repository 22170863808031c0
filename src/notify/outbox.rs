//! The outbox: one redb file in the state directory (`notify.redb`) holding
//!
//! - every notification until its integration accepted it (`outbox`),
//! - what was sent for which alert (`nflog`: the notification log, so that a restart
//!   neither pages again nor forgets to resolve),
//! - the silences (`silences`).
//!
//! The router queues notifications and records them as sent in one write
//! transaction; redb syncs the file on every commit (its default durability), so once
//! a decision is made it survives a SIGKILL or a power cut.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Notification;
use crate::route::silence::Silence;

/// Waiting notifications by (target, id): each integration's queue is one range, so
/// finding its head or depth reads only its own entries, however long another
/// integration's queue has grown.
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// The first format of the queue, keyed by id alone; moved into `QUEUE` at open.
const OUTBOX_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const NFLOG: TableDefinition<&str, &[u8]> = TableDefinition::new("nflog");
/// Queue entries that could not be decoded, moved out of the queue so they neither
/// block it nor vanish: kept by (target, id) with their bytes as they were, counted in
/// `/metrics` and shown in `/status` for a person to look at.
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
const SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("silences");
/// Counters: `next_id`, so ids grow across removals and restarts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What the notification log keeps per receiver and alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// Whether the last notification was a page (firing) or a resolve.
    pub firing: bool,
    /// When it was queued (ms).
    pub at: i64,
    /// The alert's last event, to resolve it even if the alert itself is gone (a
    /// rule removed on reload).
    pub event: super::AlertEvent,
}

/// An outbox error: the database said no.
#[derive(Debug, thiserror::Error)]
#[error("outbox {0}")]
pub struct OutboxError(String);

fn err(e: impl std::fmt::Display) -> OutboxError {
    OutboxError(e.to_string())
}

/// The outbox database.
pub struct Outbox {
    /// The redb database.
    db: Database,
}

impl Outbox {
    /// Opens (or creates) `notify.redb` in `dir`, moving entries of the first queue
    /// format into the current one.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let db = Database::create(dir.join("notify.redb")).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        {
            let mut queue = txn.open_table(QUEUE).map_err(err)?;
            let mut old = txn.open_table(OUTBOX_V1).map_err(err)?;
            let mut moved = Vec::new();
            for row in old.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if let Ok(n) = serde_json::from_slice::<Notification>(v.value()) {
                    moved.push((n.target, k.value(), v.value().to_vec()));
                }
            }
            for (target, id, bytes) in &moved {
                queue
                    .insert((target.as_str(), *id), bytes.as_slice())
                    .map_err(err)?;
            }
            old.retain(|_, _| false).map_err(err)?;
        }
        txn.open_table(NFLOG).map_err(err)?;
        txn.open_table(DEAD).map_err(err)?;
        txn.open_table(SILENCES).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Outbox { db })
    }

    /// Queues `notifications` and records `sent` (key → entry, or removal) in one
    /// synced transaction.
    pub fn commit(
        &self,
        notifications: &[Notification],
        sent: &[(String, Option<Sent>)],
    ) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut queue = txn.open_table(QUEUE).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut next = meta
                .get("next_id")
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(1);
            for n in notifications {
                let bytes = serde_json::to_vec(n).map_err(err)?;
                queue
                    .insert((n.target.as_str(), next), bytes.as_slice())
                    .map_err(err)?;
                next += 1;
            }
            meta.insert("next_id", next).map_err(err)?;
            let mut nflog = txn.open_table(NFLOG).map_err(err)?;
            for (key, entry) in sent {
                match entry {
                    Some(e) => {
                        let bytes = serde_json::to_vec(e).map_err(err)?;
                        nflog.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
                    }
                    None => {
                        nflog.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }

    /// The oldest notification waiting for `target`. An entry that cannot be decoded
    /// is moved to the dead letters (never skipped in place, which would leave it at
    /// the head for ever, nor deleted).
    pub fn head(&self, target: &str) -> Result<Option<(u64, Notification)>, OutboxError> {
        loop {
            let mut unreadable = Vec::new();
            let mut found = None;
            {
                let txn = self.db.begin_read().map_err(err)?;
                let table = txn.open_table(QUEUE).map_err(err)?;
                for row in table.range((target, 0)..=(target, u64::MAX)).map_err(err)? {
                    let (k, v) = row.map_err(err)?;
                    let id = k.value().1;
                    match serde_json::from_slice(v.value()) {
                        Ok(n) => {
                            found = Some((id, n));
                            break;
                        }
                        Err(e) => {
                            tracing::error!(message = "An outbox entry cannot be read; moving it to the dead letters.", target, id, error = %e);
                            unreadable.push(id);
                            if unreadable.len() >= 100 {
                                break;
                            }
                        }
                    }
                }
            }
            if !unreadable.is_empty() {
                self.bury(target, &unreadable)?;
            }
            if found.is_some() || unreadable.is_empty() {
                return Ok(found);
            }
        }
    }

    /// Moves the entries `ids` of `target` from the queue to the dead letters.
    fn bury(&self, target: &str, ids: &[u64]) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut queue = txn.open_table(QUEUE).map_err(err)?;
            let mut dead = txn.open_table(DEAD).map_err(err)?;
            for id in ids {
                let bytes = queue
                    .remove((target, *id))
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                if let Some(bytes) = bytes {
                    dead.insert((target, *id), bytes.as_slice()).map_err(err)?;
                }
            }
        }
        txn.commit().map_err(err)
    }

    /// How many entries wait in the dead letters.
    pub fn dead_letters(&self) -> Result<usize, OutboxError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(DEAD).map_err(err)?;
        Ok(table.len().map_err(err)? as usize)
    }

    /// How many notifications wait for `target`, and since when the oldest.
    pub fn depth(&self, target: &str) -> Result<(usize, Option<DateTime<Utc>>), OutboxError> {
        let oldest = self.head(target)?.map(|(_, n)| n.created_at);
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(QUEUE).map_err(err)?;
        let depth = table
            .range((target, 0)..=(target, u64::MAX))
            .map_err(err)?
            .count();
        Ok((depth, oldest))
    }

    /// How many notifications wait, for every target.
    pub fn queued(&self) -> Result<usize, OutboxError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(QUEUE).map_err(err)?;
        Ok(table.len().map_err(err)? as usize)
    }

    /// Removes a delivered (or refused) notification of `target`.
    pub fn remove(&self, target: &str, id: u64) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(QUEUE)
            .map_err(err)?
            .remove((target, id))
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// The notification log.
    pub fn sent(&self) -> Result<HashMap<String, Sent>, OutboxError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(NFLOG).map_err(err)?;
        let mut out = HashMap::new();
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            match serde_json::from_slice(v.value()) {
                Ok(s) => {
                    out.insert(k.value().to_string(), s);
                }
                // Left in place (the next page for that alert replaces it).
                Err(e) => {
                    tracing::error!(message = "A notification log entry cannot be read; that alert may be paged again.", key = %k.value().replace('\0', "/"), error = %e)
                }
            }
        }
        Ok(out)
    }

    /// Every silence kept.
    pub fn silences(&self) -> Result<Vec<Silence>, OutboxError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(SILENCES).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            match serde_json::from_slice(v.value()) {
                Ok(s) => out.push(s),
                // Left in place, for a person to look at; it mutes nothing.
                Err(e) => {
                    tracing::error!(message = "A stored silence cannot be read; it is ignored.", id = %k.value(), error = %e)
                }
            }
        }
        Ok(out)
    }

    /// Stores (or replaces) a silence.
    pub fn put_silence(&self, s: &Silence) -> Result<(), OutboxError> {
        let bytes = serde_json::to_vec(s).map_err(err)?;
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(SILENCES)
            .map_err(err)?
            .insert(s.id.as_str(), bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Forgets a silence.
    pub fn delete_silence(&self, id: &str) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(SILENCES)
            .map_err(err)?
            .remove(id)
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(target: &str) -> Notification {
        Notification {
            target: target.into(),
            receiver: "r".into(),
            group_key: "g".into(),
            events: Vec::new(),
            created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn notifications_survive_reopening_and_leave_in_order_per_target() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.commit(&[note("a/sns"), note("b/webhook"), note("a/sns")], &[])
                .unwrap();
        }
        let o = Outbox::open(dir.path()).unwrap();
        let (first, _) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(o.depth("a/sns").unwrap().0, 2);
        o.remove("a/sns", first).unwrap();
        let (second, _) = o.head("a/sns").unwrap().unwrap();
        assert!(second > first);
        assert_eq!(o.head("b/webhook").unwrap().unwrap().0, 2);
        o.remove("a/sns", second).unwrap();
        assert!(o.head("a/sns").unwrap().is_none());
        // Ids keep growing after removals, so order holds across restarts.
        o.commit(&[note("a/sns")], &[]).unwrap();
        assert!(o.head("a/sns").unwrap().unwrap().0 > second);
    }

    fn event(value: f64, for_seconds: f64) -> super::super::AlertEvent {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        super::super::AlertEvent {
            alarm_name: "test-HighLatency-0123abcd".into(),
            fingerprint: "0123abcd0123abcd".into(),
            firing: true,
            reason: "first".into(),
            labels: [("alertname".to_string(), "HighLatency".to_string())].into(),
            annotations: Default::default(),
            value,
            expr: "histogram_quantile(0.95, x) > 2".into(),
            for_seconds,
            starts_at: t,
            ends_at: None,
            changed_at: t,
            environment: "test".into(),
        }
    }

    #[test]
    fn a_page_carrying_an_infinite_value_is_delivered_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut n = note("a/sns");
        n.events = vec![event(f64::INFINITY, 300.0)];
        let sent = Sent {
            firing: true,
            at: 1,
            event: event(f64::NAN, 0.0),
        };
        o.commit(&[n.clone()], &[("k".into(), Some(sent))]).unwrap();
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        let (_, back) = o.head("a/sns").unwrap().expect("the page is readable");
        assert_eq!(back, n);
        assert!(o.sent().unwrap()["k"].event.value.is_nan());
        assert_eq!(o.dead_letters().unwrap(), 0);
    }

    #[test]
    fn an_undecodable_entry_goes_to_the_dead_letters_and_the_queue_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        o.commit(&[note("a/sns"), note("a/sns")], &[]).unwrap();
        {
            let txn = o.db.begin_write().unwrap();
            txn.open_table(QUEUE)
                .unwrap()
                .insert(("a/sns", 1), b"{not json".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (id, _) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(id, 2);
        assert_eq!(o.dead_letters().unwrap(), 1);
        assert_eq!(o.depth("a/sns").unwrap().0, 1);
        // An entry an earlier version wrote with `null` for +Inf is read (as NaN).
        let mut v = serde_json::to_value(note("b/sns")).unwrap();
        let mut e = serde_json::to_value(event(1.0, 0.0)).unwrap();
        e["value"] = serde_json::Value::Null;
        v["events"] = serde_json::json!([e]);
        {
            let txn = o.db.begin_write().unwrap();
            let bytes = serde_json::to_vec(&v).unwrap();
            txn.open_table(QUEUE)
                .unwrap()
                .insert(("b/sns", 9), bytes.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(o.head("b/sns").unwrap().unwrap().1.events[0].value.is_nan());
    }

    mod round_trip {
        use super::*;
        use crate::route::matcher::Matcher;
        use proptest::prelude::*;

        fn float() -> impl Strategy<Value = f64> {
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

        fn time() -> impl Strategy<Value = DateTime<Utc>> {
            (crate::clock::EARLIEST_MS..=crate::clock::LATEST_MS).prop_map(crate::clock::at_ms)
        }

        fn text() -> impl Strategy<Value = String> {
            any::<String>()
        }

        fn same_f64(a: f64, b: f64) -> bool {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }

        prop_compose! {
            fn events()(value in float(), for_seconds in float(), starts in time(), ends in proptest::option::of(time()),
                        labels in proptest::collection::btree_map(text(), text(), 0..4),
                        annotations in proptest::collection::btree_map(text(), text(), 0..3),
                        name in text(), firing in any::<bool>()) -> super::super::super::AlertEvent {
                let mut e = event(value, for_seconds);
                e.alarm_name = name;
                e.firing = firing;
                e.labels = labels;
                e.annotations = annotations;
                e.starts_at = starts;
                e.ends_at = ends;
                e
            }
        }

        proptest! {
            #[test]
            fn every_persisted_notification_and_log_entry_reads_back(e in events(), at in any::<i64>(), target in text()) {
                let mut n = note(&target);
                n.events = vec![e.clone()];
                let back: Notification = serde_json::from_slice(&serde_json::to_vec(&n).unwrap()).unwrap();
                prop_assert!(same_f64(back.events[0].value, e.value));
                prop_assert!(same_f64(back.events[0].for_seconds, e.for_seconds));
                prop_assert_eq!(&back.events[0].labels, &e.labels);
                prop_assert_eq!(back.events[0].starts_at, e.starts_at);
                prop_assert_eq!(back.events[0].ends_at, e.ends_at);
                let s = Sent { firing: true, at, event: e.clone() };
                let back: Sent = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
                prop_assert_eq!(back.at, at);
                prop_assert!(same_f64(back.event.value, e.value));
            }

            #[test]
            fn every_stored_silence_reads_back(starts in time(), ends in time(), by in text(), comment in text(), value in text()) {
                let s = Silence {
                    id: "0".into(),
                    matchers: vec![Matcher::new("alertname", crate::route::matcher::Op::Equal, &value).unwrap()],
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

            #[test]
            fn the_outbox_opens_whatever_its_file_holds(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("notify.redb"), &bytes).unwrap();
                // An error or a usable outbox; never a panic.
                if let Ok(o) = Outbox::open(dir.path()) {
                    let _ = o.head("a/sns");
                    let _ = o.sent();
                    let _ = o.silences();
                }
            }
        }
    }

    #[test]
    fn a_queue_of_the_first_format_is_moved_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("notify.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut old = txn.open_table(OUTBOX_V1).unwrap();
                for (id, target) in [(7u64, "a/sns"), (8, "b/webhook"), (9, "a/sns")] {
                    let bytes = serde_json::to_vec(&note(target)).unwrap();
                    old.insert(id, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.queued().unwrap(), 3);
        assert_eq!(o.depth("a/sns").unwrap().0, 2);
        assert_eq!(o.head("a/sns").unwrap().unwrap().0, 7);
        assert_eq!(o.head("b/webhook").unwrap().unwrap().0, 8);
        drop(o);
        // Moved, not copied: a second open finds the same three.
        assert_eq!(Outbox::open(dir.path()).unwrap().queued().unwrap(), 3);
    }
}
