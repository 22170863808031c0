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

    /// The oldest notification waiting for `target`.
    pub fn head(&self, target: &str) -> Result<Option<(u64, Notification)>, OutboxError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(QUEUE).map_err(err)?;
        for row in table.range((target, 0)..=(target, u64::MAX)).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let id = k.value().1;
            match serde_json::from_slice(v.value()) {
                Ok(n) => return Ok(Some((id, n))),
                Err(e) => {
                    tracing::error!(message = "Skipping an unreadable outbox entry.", id, error = %e)
                }
            }
        }
        Ok(None)
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
            if let Ok(s) = serde_json::from_slice(v.value()) {
                out.insert(k.value().to_string(), s);
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
            let (_, v) = row.map_err(err)?;
            if let Ok(s) = serde_json::from_slice(v.value()) {
                out.push(s);
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
