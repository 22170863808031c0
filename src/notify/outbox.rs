//! The outbox: one redb file in the state directory (`notify.redb`) holding
//!
//! - every notification until its integration accepted it (`queue`),
//! - what was sent for which alert (`nflog`: the notification log, so that a restart
//!   neither pages again nor forgets to resolve),
//! - the pages a group's timers hold back (`held`: a restart during the hold must
//!   not forget an outage that is over by the time the hold ends),
//! - the silences (`silences`),
//! - entries that could not be decoded (`dead_letters`), kept for a person.
//!
//! The router queues notifications and records them as sent in one write
//! transaction; redb syncs the file on every commit (its default durability), so once
//! a decision is made it survives a SIGKILL or a power cut.
//!
//! **Storage trouble degrades, it does not stop paging.** Everything the file holds
//! is also held in memory, and every read is answered from memory. A write goes to
//! memory first, then to the file; when the file cannot be written (a full disk, an
//! I/O error — after which redb fails every later commit — or a `notify.redb` that is
//! locked or corrupt at the start) the outbox keeps working from memory, says so in
//! [`Outbox::health`], and tries again at most every [`RETRY_EVERY`]: it reopens the
//! file and writes the whole of memory into it in one transaction, so nothing
//! committed before or during the trouble is lost, and nothing delivered during it is
//! sent again. A file that cannot be opened at the start is merged in when it can:
//! its queue first, then what was queued meanwhile. A corrupt file is moved aside
//! (`notify.redb.unreadable-<time>`) and a new one started.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Notification;

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
/// Pages held back by their group's timers, by `group key \0 receiver \0 fingerprint`.
const HELD: TableDefinition<&str, &[u8]> = TableDefinition::new("held");
/// Counters: `next_id`, so ids grow across removals and restarts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How often a failing file is tried again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(5);

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

/// A page its group's timers hold back (`group_wait`, or `group_interval` after the
/// group's last page), kept until it is sent, so that an alert resolving meanwhile, or
/// a restart, does not make it forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Its group.
    pub group_key: String,
    /// Its receiver.
    pub receiver: String,
    /// The page as it would have gone out.
    pub event: super::AlertEvent,
    /// When the timers let it go (ms).
    pub ready: i64,
    /// The longest they hold a page (the route's `group_wait` or `group_interval`, ms).
    pub longest: i64,
}

/// An outbox error: the database said no.
#[derive(Debug, thiserror::Error)]
#[error("outbox {0}")]
pub struct OutboxError(String);

fn err(e: impl std::fmt::Display) -> OutboxError {
    OutboxError(e.to_string())
}

/// Whether the file behind the outbox is being written, as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageHealth {
    /// Whether everything in memory is also in the file.
    pub ok: bool,
    /// The last error, while failing.
    pub error: Option<String>,
    /// Since when it fails.
    pub failing_since: Option<DateTime<Utc>>,
    /// Files set aside because they could not be read.
    pub set_aside: Vec<String>,
}

/// Everything the file holds, in memory.
#[derive(Debug, Default)]
struct Tables {
    queue: BTreeMap<(String, u64), Vec<u8>>,
    dead: BTreeMap<(String, u64), Vec<u8>>,
    nflog: BTreeMap<String, Vec<u8>>,
    silences: BTreeMap<String, Vec<u8>>,
    held: BTreeMap<String, Vec<u8>>,
    next_id: u64,
}

/// The outbox's state behind its lock.
struct Inner {
    /// The open file, when it is usable.
    db: Option<Database>,
    /// Everything, whatever the file's state.
    mem: Tables,
    /// Whether `mem` started from the file (false when the file could not be read at
    /// the start: it is merged in when it can be).
    loaded: bool,
    /// Whether `mem` holds changes the file lacks.
    dirty: bool,
    /// The last storage error, while failing.
    error: Option<String>,
    /// Since when.
    failing_since: Option<DateTime<Utc>>,
    /// When the file was last tried.
    last_try: Option<Instant>,
    /// Files moved aside.
    set_aside: Vec<String>,
    /// Whether [`Outbox::open`] has returned: a file read after that was merged
    /// into a memory others had already read from.
    started: bool,
    /// Whether the file was merged in after the start and [`Outbox::take_merged`]
    /// has not said so yet.
    merged_late: bool,
}

/// The outbox database.
pub struct Outbox {
    /// `notify.redb`.
    path: PathBuf,
    /// The file and the memory copy.
    inner: Mutex<Inner>,
}

/// Opens `path`, moving a corrupt file aside (and starting a new one).
fn open_db(path: &Path, set_aside: &mut Vec<String>) -> Result<Database, OutboxError> {
    match Database::create(path) {
        Ok(db) => Ok(db),
        Err(e) if is_corrupt(&e) => {
            keep_aside(path, set_aside, &e)?;
            Database::create(path).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Renames the unreadable file at `path` aside, where an operator can look at it.
fn keep_aside(
    path: &Path,
    set_aside: &mut Vec<String>,
    why: &dyn std::fmt::Display,
) -> Result<(), OutboxError> {
    let aside = crate::clock::aside_path(path);
    std::fs::rename(path, &aside).map_err(err)?;
    tracing::error!(message = "The outbox file is unreadable; it is kept aside and a new one started. Alerts paged before may be paged again.", file = %aside.display(), error = %why);
    set_aside.push(aside.display().to_string());
    Ok(())
}

/// Runs a call into redb, turning a panic into an error: redb returns errors for
/// most damage but panics on some (a stored key whose bytes are no longer UTF-8,
/// one flipped bit), and one damaged file must not stop paging.
fn unwinding<T>(f: impl FnOnce() -> Result<T, OutboxError>) -> Result<T, Unwound> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Unwound::Error),
        Err(payload) => Err(Unwound::Panic(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic inside redb".into()),
        )),
    }
}

/// How a call into redb failed: an error it returned, or a panic (the file's
/// content is damaged where redb does not check it).
enum Unwound {
    Error(OutboxError),
    Panic(String),
}

/// Whether opening failed because the file is not a database redb can read (rather
/// than locked or on a failing disk, which may pass).
fn is_corrupt(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::UpgradeRequired(_) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// Reads every table of `db` (moving entries of the first queue format).
fn read_all(db: &Database) -> Result<Tables, OutboxError> {
    let txn = db.begin_write().map_err(err)?;
    let mut t = Tables::default();
    {
        let queue = txn.open_table(QUEUE).map_err(err)?;
        for row in queue.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let (target, id) = k.value();
            t.queue.insert((target.to_string(), id), v.value().to_vec());
        }
        let mut old = txn.open_table(OUTBOX_V1).map_err(err)?;
        for row in old.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            match serde_json::from_slice::<Notification>(v.value()) {
                Ok(n) => t.queue.insert((n.target, k.value()), v.value().to_vec()),
                Err(_) => t
                    .dead
                    .insert((String::new(), k.value()), v.value().to_vec()),
            };
        }
        old.retain(|_, _| false).map_err(err)?;
        let dead = txn.open_table(DEAD).map_err(err)?;
        for row in dead.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let (target, id) = k.value();
            t.dead.insert((target.to_string(), id), v.value().to_vec());
        }
        let nflog = txn.open_table(NFLOG).map_err(err)?;
        for row in nflog.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            t.nflog.insert(k.value().to_string(), v.value().to_vec());
        }
        let silences = txn.open_table(SILENCES).map_err(err)?;
        for row in silences.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            t.silences.insert(k.value().to_string(), v.value().to_vec());
        }
        let held = txn.open_table(HELD).map_err(err)?;
        for row in held.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            t.held.insert(k.value().to_string(), v.value().to_vec());
        }
        let meta = txn.open_table(META).map_err(err)?;
        let stored = meta.get("next_id").map_err(err)?.map_or(1, |v| v.value());
        let highest = t
            .queue
            .keys()
            .chain(t.dead.keys())
            .map(|k| k.1.saturating_add(1))
            .max();
        t.next_id = stored.max(highest.unwrap_or(1));
    }
    txn.commit().map_err(err)?;
    Ok(t)
}

/// Replaces every table of `db` with `t`, in one synced transaction.
fn write_all(db: &Database, t: &Tables) -> Result<(), OutboxError> {
    let txn = db.begin_write().map_err(err)?;
    {
        let mut queue = txn.open_table(QUEUE).map_err(err)?;
        queue.retain(|_, _| false).map_err(err)?;
        for ((target, id), v) in &t.queue {
            queue
                .insert((target.as_str(), *id), v.as_slice())
                .map_err(err)?;
        }
        let mut dead = txn.open_table(DEAD).map_err(err)?;
        dead.retain(|_, _| false).map_err(err)?;
        for ((target, id), v) in &t.dead {
            dead.insert((target.as_str(), *id), v.as_slice())
                .map_err(err)?;
        }
        let mut nflog = txn.open_table(NFLOG).map_err(err)?;
        nflog.retain(|_, _| false).map_err(err)?;
        for (k, v) in &t.nflog {
            nflog.insert(k.as_str(), v.as_slice()).map_err(err)?;
        }
        let mut silences = txn.open_table(SILENCES).map_err(err)?;
        silences.retain(|_, _| false).map_err(err)?;
        for (k, v) in &t.silences {
            silences.insert(k.as_str(), v.as_slice()).map_err(err)?;
        }
        let mut held = txn.open_table(HELD).map_err(err)?;
        held.retain(|_, _| false).map_err(err)?;
        for (k, v) in &t.held {
            held.insert(k.as_str(), v.as_slice()).map_err(err)?;
        }
        txn.open_table(META)
            .map_err(err)?
            .insert("next_id", t.next_id)
            .map_err(err)?;
    }
    txn.commit().map_err(err)
}

/// One change, applied to memory and then to the file.
enum Change<'a> {
    /// Queue entries, log changes and held pages' changes (one router decision).
    Commit {
        queued: &'a [((String, u64), Vec<u8>)],
        sent: &'a [(String, Option<Vec<u8>>)],
        held: &'a [(String, Option<Vec<u8>>)],
        next_id: u64,
    },
    /// A queue entry delivered or refused.
    Remove(&'a str, u64),
    /// Queue entries moved to the dead letters.
    Bury(&'a str, &'a [u64]),
    /// A silence stored.
    PutSilence(&'a str, &'a [u8]),
    /// A silence forgotten.
    DeleteSilence(&'a str),
}

impl Change<'_> {
    fn apply_mem(&self, t: &mut Tables) {
        match self {
            Change::Commit {
                queued,
                sent,
                held,
                next_id,
            } => {
                for (k, v) in *queued {
                    t.queue.insert(k.clone(), v.clone());
                }
                for (table, changes) in [(&mut t.nflog, sent), (&mut t.held, held)] {
                    for (k, v) in changes.iter() {
                        match v {
                            Some(v) => table.insert(k.clone(), v.clone()),
                            None => table.remove(k),
                        };
                    }
                }
                t.next_id = *next_id;
            }
            Change::Remove(target, id) => {
                t.queue.remove(&(target.to_string(), *id));
            }
            Change::Bury(target, ids) => {
                for id in *ids {
                    let k = (target.to_string(), *id);
                    if let Some(v) = t.queue.remove(&k) {
                        t.dead.insert(k, v);
                    }
                }
            }
            Change::PutSilence(id, v) => {
                t.silences.insert(id.to_string(), v.to_vec());
            }
            Change::DeleteSilence(id) => {
                t.silences.remove(*id);
            }
        }
    }

    fn apply_db(&self, db: &Database) -> Result<(), OutboxError> {
        let txn = db.begin_write().map_err(err)?;
        match self {
            Change::Commit {
                queued,
                sent,
                held,
                next_id,
            } => {
                let mut queue = txn.open_table(QUEUE).map_err(err)?;
                for ((target, id), v) in *queued {
                    queue
                        .insert((target.as_str(), *id), v.as_slice())
                        .map_err(err)?;
                }
                for (table, changes) in [(NFLOG, sent), (HELD, held)] {
                    let mut table = txn.open_table(table).map_err(err)?;
                    for (k, v) in changes.iter() {
                        match v {
                            Some(v) => table.insert(k.as_str(), v.as_slice()).map(|_| ()),
                            None => table.remove(k.as_str()).map(|_| ()),
                        }
                        .map_err(err)?;
                    }
                }
                txn.open_table(META)
                    .map_err(err)?
                    .insert("next_id", *next_id)
                    .map_err(err)?;
            }
            Change::Remove(target, id) => {
                txn.open_table(QUEUE)
                    .map_err(err)?
                    .remove((*target, *id))
                    .map_err(err)?;
            }
            Change::Bury(target, ids) => {
                let mut queue = txn.open_table(QUEUE).map_err(err)?;
                let mut dead = txn.open_table(DEAD).map_err(err)?;
                for id in *ids {
                    let v = queue
                        .remove((*target, *id))
                        .map_err(err)?
                        .map(|v| v.value().to_vec());
                    if let Some(v) = v {
                        dead.insert((*target, *id), v.as_slice()).map_err(err)?;
                    }
                }
            }
            Change::PutSilence(id, v) => {
                txn.open_table(SILENCES)
                    .map_err(err)?
                    .insert(*id, *v)
                    .map_err(err)?;
            }
            Change::DeleteSilence(id) => {
                txn.open_table(SILENCES)
                    .map_err(err)?
                    .remove(*id)
                    .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }
}

impl Outbox {
    /// Opens (or creates) `notify.redb` in `dir`. A file that cannot be opened or
    /// read does not stop paging: the outbox starts from memory and merges the file
    /// in once it can (see the module's documentation).
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let path = dir.join("notify.redb");
        let inner = Inner {
            db: None,
            mem: Tables {
                next_id: 1,
                ..Tables::default()
            },
            loaded: false,
            dirty: false,
            error: None,
            failing_since: None,
            last_try: None,
            set_aside: Vec::new(),
            started: false,
            merged_late: false,
        };
        let outbox = Outbox {
            path,
            inner: Mutex::new(inner),
        };
        {
            let mut inner = outbox.lock();
            outbox.reconnect(&mut inner);
            if !inner.loaded {
                inner.mem.next_id = inner.mem.next_id.max(memory_first_id());
            }
            inner.started = true;
        }
        Ok(outbox)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the file when it is closed, merges it in if memory did not start from
    /// it, and writes memory into it when memory holds more.
    fn reconnect(&self, inner: &mut Inner) {
        inner.last_try = Some(Instant::now());
        let result = match unwinding(|| self.sync_file(inner)) {
            Ok(()) => Ok(()),
            Err(Unwound::Error(e)) => Err(e),
            Err(Unwound::Panic(why)) => {
                // Damaged past what opening checks: as unreadable as a bad header.
                inner.db = None;
                keep_aside(&self.path, &mut inner.set_aside, &why).and_then(|()| {
                    match unwinding(|| self.sync_file(inner)) {
                        Ok(()) => Ok(()),
                        Err(Unwound::Error(e)) => Err(e),
                        Err(Unwound::Panic(why)) => Err(err(why)),
                    }
                })
            }
        };
        match result {
            Ok(()) => {
                if inner.error.take().is_some() {
                    tracing::info!(message = "The outbox file is written again; nothing was lost.", file = %self.path.display());
                }
                inner.failing_since = None;
            }
            Err(e) => self.failed(inner, e),
        }
    }

    /// Opens the file if it is closed, merges it into memory if memory did not start
    /// from it, and writes memory into it if memory holds more.
    fn sync_file(&self, inner: &mut Inner) -> Result<(), OutboxError> {
        if inner.db.is_none() {
            inner.db = Some(open_db(&self.path, &mut inner.set_aside)?);
        }
        let db = inner.db.as_ref().expect("just opened");
        if !inner.loaded {
            let file = read_all(db)?;
            merge(&mut inner.mem, file);
            inner.loaded = true;
            inner.dirty = true;
            inner.merged_late = inner.started;
        }
        if inner.dirty {
            write_all(db, &inner.mem)?;
            inner.dirty = false;
        }
        Ok(())
    }

    fn failed(&self, inner: &mut Inner, e: OutboxError) {
        // A redb database that failed a commit fails every later one: drop it and
        // open the file afresh at the next try.
        inner.db = None;
        inner.dirty = true;
        if inner.error.is_none() {
            tracing::error!(message = "Cannot write the outbox file; paging goes on from memory and the file is retried.", file = %self.path.display(), error = %e, retry_in_seconds = RETRY_EVERY.as_secs());
            inner.failing_since = Some(Utc::now());
        }
        inner.error = Some(e.to_string());
    }

    /// Applies `change` to memory, then to the file (or leaves it for the next try).
    fn change(&self, change: Change<'_>) {
        let mut inner = self.lock();
        self.change_locked(&mut inner, change);
    }

    /// [`Outbox::change`] with the lock already held.
    fn change_locked(&self, inner: &mut Inner, change: Change<'_>) {
        change.apply_mem(&mut inner.mem);
        if inner.db.is_some() && !inner.dirty {
            let db = inner.db.as_ref().expect("checked");
            // A panic leaves the file to the next reconnect, which sets it aside.
            match unwinding(|| change.apply_db(db)) {
                Ok(()) => {}
                Err(Unwound::Error(e)) => self.failed(inner, e),
                Err(Unwound::Panic(why)) => self.failed(inner, err(why)),
            }
        } else {
            inner.dirty = true;
            self.retry_due(inner);
        }
    }

    fn retry_due(&self, inner: &mut Inner) {
        if inner.last_try.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
            self.reconnect(inner);
        }
    }

    /// Tries the file again if it is failing and the last try is [`RETRY_EVERY`] old;
    /// the router calls this at every step.
    pub fn retry(&self) {
        let mut inner = self.lock();
        if inner.dirty || inner.db.is_none() {
            self.retry_due(&mut inner);
        }
    }

    /// Tries the file now, whatever the time of the last try (for `vigil` commands
    /// and tests; the daemon uses [`Outbox::retry`]).
    pub fn try_file_now(&self) {
        let mut inner = self.lock();
        if inner.dirty || inner.db.is_none() {
            self.reconnect(&mut inner);
        }
    }

    /// Whether the file is written, and why not.
    pub fn health(&self) -> StorageHealth {
        let inner = self.lock();
        StorageHealth {
            ok: inner.error.is_none() && !inner.dirty && inner.db.is_some(),
            error: inner.error.clone(),
            failing_since: inner.failing_since,
            set_aside: inner.set_aside.clone(),
        }
    }

    /// Queues `notifications`, records `sent` (key → entry, or removal) and the
    /// changes to the `held` pages (key → page, or removal) in one synced transaction
    /// (in memory first: see the module's documentation).
    pub fn commit(
        &self,
        notifications: &[Notification],
        sent: &[(String, Option<Sent>)],
        held: &[(String, Option<Held>)],
    ) -> Result<(), OutboxError> {
        let mut encoded = Vec::with_capacity(notifications.len());
        for n in notifications {
            encoded.push((n.target.clone(), serde_json::to_vec(n).map_err(err)?));
        }
        let log = encode_changes(sent)?;
        let held = encode_changes(held)?;
        // Ids are taken and used under one lock, so two commits never share one.
        let mut inner = self.lock();
        let mut next = inner.mem.next_id;
        let mut queued = Vec::with_capacity(encoded.len());
        for (target, bytes) in encoded {
            queued.push(((target, next), bytes));
            next = next.saturating_add(1);
        }
        let change = Change::Commit {
            queued: &queued,
            sent: &log,
            held: &held,
            next_id: next,
        };
        self.change_locked(&mut inner, change);
        Ok(())
    }

    /// The oldest notification waiting for `target`. An entry that cannot be decoded
    /// is moved to the dead letters (never skipped in place, which would leave it at
    /// the head for ever, nor deleted).
    pub fn head(&self, target: &str) -> Result<Option<(u64, Notification)>, OutboxError> {
        let mut unreadable = Vec::new();
        let mut found = None;
        {
            let inner = self.lock();
            let from = (target.to_string(), 0);
            let to = (target.to_string(), u64::MAX);
            for ((_, id), v) in inner.mem.queue.range(from..=to) {
                match serde_json::from_slice(v) {
                    Ok(n) => {
                        found = Some((*id, n));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(message = "An outbox entry cannot be read; moving it to the dead letters.", target, id, error = %e);
                        unreadable.push(*id);
                    }
                }
            }
        }
        if !unreadable.is_empty() {
            self.change(Change::Bury(target, &unreadable));
        }
        Ok(found)
    }

    /// How many entries wait in the dead letters.
    pub fn dead_letters(&self) -> Result<usize, OutboxError> {
        Ok(self.lock().mem.dead.len())
    }

    /// How many notifications wait for `target`, and since when the oldest.
    pub fn depth(&self, target: &str) -> Result<(usize, Option<DateTime<Utc>>), OutboxError> {
        let oldest = self.head(target)?.map(|(_, n)| n.created_at);
        let inner = self.lock();
        let depth = inner
            .mem
            .queue
            .range((target.to_string(), 0)..=(target.to_string(), u64::MAX))
            .count();
        Ok((depth, oldest))
    }

    /// How many notifications wait, for every target.
    pub fn queued(&self) -> Result<usize, OutboxError> {
        Ok(self.lock().mem.queue.len())
    }

    /// Removes a delivered (or refused) notification of `target`.
    pub fn remove(&self, target: &str, id: u64) -> Result<(), OutboxError> {
        self.change(Change::Remove(target, id));
        Ok(())
    }

    /// Whether the file, unreadable at the start, has been merged in since the last
    /// call: what was read from memory before (the notification log, the silences)
    /// is to be read again, since it now holds what was paged before the restart.
    pub fn take_merged(&self) -> bool {
        std::mem::take(&mut self.lock().merged_late)
    }

    /// The notification log: what each receiver was last sent, per alert.
    pub fn sent(&self) -> Result<HashMap<String, Sent>, OutboxError> {
        let inner = self.lock();
        let mut out = HashMap::new();
        for (k, v) in &inner.mem.nflog {
            match serde_json::from_slice::<Sent>(v) {
                Ok(mut s) => {
                    // A time from the future (a clock stepped back) or before the
                    // epoch is pulled into range.
                    s.at = s.at.clamp(0, Utc::now().timestamp_millis());
                    out.insert(k.clone(), s);
                }
                // Left in place (the next page for that alert replaces it).
                Err(e) => {
                    tracing::error!(message = "A notification log entry cannot be read; that alert may be paged again.", key = %k.replace('\0', "/"), error = %e)
                }
            }
        }
        Ok(out)
    }

    /// The pages held back by their group's timers, by their key. One that cannot be
    /// read is said and removed (nothing could ever tell or replace it): the page it
    /// was is lost, as a held page was to every restart before they were kept.
    pub fn held(&self) -> Result<HashMap<String, Held>, OutboxError> {
        let mut inner = self.lock();
        let mut out = HashMap::new();
        let mut unreadable = Vec::new();
        for (k, v) in &inner.mem.held {
            match serde_json::from_slice::<Held>(v) {
                Ok(h) => {
                    out.insert(k.clone(), h);
                }
                Err(e) => {
                    tracing::error!(message = "A held page cannot be read; it is removed, and if its outage is over, it is not told.", key = %k.replace('\0', "/"), error = %e);
                    unreadable.push((k.clone(), None));
                }
            }
        }
        if !unreadable.is_empty() {
            let next_id = inner.mem.next_id;
            let change = Change::Commit {
                queued: &[],
                sent: &[],
                held: &unreadable,
                next_id,
            };
            self.change_locked(&mut inner, change);
        }
        Ok(out)
    }

    /// Every silence kept, as (id, the bytes its store wrote); the silence store
    /// owns their format.
    pub fn silences(&self) -> Result<Vec<(String, Vec<u8>)>, OutboxError> {
        let inner = self.lock();
        Ok(inner
            .mem
            .silences
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Stores (or replaces) the silence `id` as `bytes`.
    pub fn put_silence(&self, id: &str, bytes: &[u8]) -> Result<(), OutboxError> {
        self.change(Change::PutSilence(id, bytes));
        Ok(())
    }

    /// Forgets a silence.
    pub fn delete_silence(&self, id: &str) -> Result<(), OutboxError> {
        self.change(Change::DeleteSilence(id));
        Ok(())
    }
}

/// Changes to a table as the file takes them: key → bytes, or removal.
type Encoded = Vec<(String, Option<Vec<u8>>)>;

/// Encodes a list of changes (key → value, or removal) for the file.
fn encode_changes<T: Serialize>(changes: &[(String, Option<T>)]) -> Result<Encoded, OutboxError> {
    changes
        .iter()
        .map(|(k, v)| {
            let bytes = v
                .as_ref()
                .map(serde_json::to_vec)
                .transpose()
                .map_err(err)?;
            Ok((k.clone(), bytes))
        })
        .collect()
}

/// The first id of entries queued in memory while the file cannot be read: above
/// any the file holds, so that both keep their ids when the file is merged in (a
/// worker delivering a page from memory meanwhile removes that page by its id).
/// The file's ids count from 1, or from an earlier start's such id: the wall clock
/// (65 536 ids a millisecond) keeps this one above those.
fn memory_first_id() -> u64 {
    let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    now.saturating_mul(1 << 16).max(1 << 40)
}

/// Adds `from`'s entries to `into` under their own ids; one whose id `into` already
/// holds takes `next` (which then moves on).
fn keep_ids(
    into: &mut BTreeMap<(String, u64), Vec<u8>>,
    from: BTreeMap<(String, u64), Vec<u8>>,
    next: &mut u64,
) {
    for ((target, id), v) in from {
        let id = if into.contains_key(&(target.clone(), id)) {
            *next = next.saturating_add(1);
            *next - 1
        } else {
            id
        };
        into.insert((target, id), v);
    }
}

/// Merges what the file held (`file`) into what memory gathered while the file
/// could not be read: every entry keeps its id (memory's are above the file's, so
/// they follow the file's in order), one that would collide takes a new one; memory's
/// log entries and silences are the newer.
fn merge(mem: &mut Tables, file: Tables) {
    let gathered = std::mem::take(mem);
    *mem = file;
    let mut next = mem.next_id.max(gathered.next_id).max(1);
    keep_ids(&mut mem.queue, gathered.queue, &mut next);
    keep_ids(&mut mem.dead, gathered.dead, &mut next);
    mem.next_id = next;
    mem.nflog.extend(gathered.nflog);
    mem.silences.extend(gathered.silences);
    mem.held.extend(gathered.held);
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Outbox {
        /// Puts bytes in the queue as they are, in memory and in the file.
        fn insert_raw(&self, target: &str, id: u64, bytes: &[u8]) {
            let queued = [((target.to_string(), id), bytes.to_vec())];
            let next = self.lock().mem.next_id.max(id + 1);
            self.change(Change::Commit {
                queued: &queued,
                sent: &[],
                held: &[],
                next_id: next,
            });
        }
    }

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
            o.commit(&[note("a/sns"), note("b/webhook"), note("a/sns")], &[], &[])
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
        o.commit(&[note("a/sns")], &[], &[]).unwrap();
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
        o.commit(&[n.clone()], &[("k".into(), Some(sent))], &[])
            .unwrap();
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        let (_, back) = o.head("a/sns").unwrap().expect("the page is readable");
        assert_eq!(back, n);
        assert!(o.sent().unwrap()["k"].event.value.is_nan());
        assert_eq!(o.dead_letters().unwrap(), 0);
    }

    #[test]
    fn an_undecodable_held_page_is_removed_and_the_others_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let held = Held {
            group_key: "0:{}".into(),
            receiver: "a".into(),
            event: event(1.0, 0.0),
            ready: 7,
            longest: 60_000,
        };
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.commit(&[], &[], &[("0:{}\0a\0f".into(), Some(held.clone()))])
                .unwrap();
            let next_id = o.lock().mem.next_id;
            o.change(Change::Commit {
                queued: &[],
                sent: &[],
                held: &[("0:{}\0a\0g".into(), Some(b"{not json".to_vec()))],
                next_id,
            });
            assert_eq!(o.lock().mem.held.len(), 2);
        }
        let o = Outbox::open(dir.path()).unwrap();
        let read = o.held().unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read["0:{}\0a\0f"], held);
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.lock().mem.held.len(), 1, "removed from the file too");
    }

    #[test]
    fn an_undecodable_entry_goes_to_the_dead_letters_and_the_queue_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        o.commit(&[note("a/sns"), note("a/sns")], &[], &[]).unwrap();
        o.insert_raw("a/sns", 1, b"{not json");
        let (id, _) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(id, 2);
        assert_eq!(o.dead_letters().unwrap(), 1);
        assert_eq!(o.depth("a/sns").unwrap().0, 1);
        // An entry an earlier version wrote with `null` for +Inf is read (as NaN).
        let mut v = serde_json::to_value(note("b/sns")).unwrap();
        let mut e = serde_json::to_value(event(1.0, 0.0)).unwrap();
        e["value"] = serde_json::Value::Null;
        v["events"] = serde_json::json!([e]);
        o.insert_raw("b/sns", 9, &serde_json::to_vec(&v).unwrap());
        assert!(o.head("b/sns").unwrap().unwrap().1.events[0].value.is_nan());
    }

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

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
            fn events()(value in crate::float::arbitrary(), for_seconds in crate::float::arbitrary(), starts in time(), ends in proptest::option::of(time()),
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
            fn every_persisted_notification_log_entry_and_held_page_reads_back(e in events(), at in any::<i64>(), target in text()) {
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
                let h = Held { group_key: target.clone(), receiver: target.clone(), event: e.clone(), ready: at, longest: at };
                let back: Held = serde_json::from_slice(&serde_json::to_vec(&h).unwrap()).unwrap();
                prop_assert_eq!((back.ready, back.longest), (at, at));
                prop_assert_eq!((&back.group_key, &back.receiver), (&target, &target));
                prop_assert!(same_f64(back.event.value, e.value));
                prop_assert_eq!(&back.event.labels, &e.labels);
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
    fn a_locked_file_at_the_start_pages_from_memory_and_is_merged_in_later() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.commit(&[note("a/sns")], &[], &[]).unwrap();
        }
        // Another process holds the file (a second daemon, a stuck copy).
        let holder = Database::create(dir.path().join("notify.redb")).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let h = o.health();
        assert!(!h.ok && h.error.is_some(), "{h:?}");
        let mut n = note("a/sns");
        n.receiver = "during".into();
        o.commit(&[n], &[("k".into(), None)], &[]).unwrap();
        let (id, first) = o.head("a/sns").unwrap().expect("pages go out from memory");
        assert_eq!(first.receiver, "during");
        o.remove("a/sns", id).unwrap();
        o.commit(&[note("a/sns")], &[], &[]).unwrap();
        drop(holder);
        o.try_file_now();
        assert!(o.health().ok, "{:?}", o.health());
        // The file's entry first, then what was queued meanwhile; the delivered one
        // is not sent again.
        assert_eq!(o.queued().unwrap(), 2);
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.queued().unwrap(), 2);
        let (a, _) = o.head("a/sns").unwrap().unwrap();
        o.remove("a/sns", a).unwrap();
        let (b, _) = o.head("a/sns").unwrap().unwrap();
        assert!(b > a);
    }

    #[test]
    fn a_file_merged_after_the_start_says_so_once_with_what_was_paged_before() {
        let dir = tempfile::tempdir().unwrap();
        let paged = Sent {
            firing: true,
            at: 1_000,
            event: event(1.0, 0.0),
        };
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.commit(&[], &[("a\0before".into(), Some(paged.clone()))], &[])
                .unwrap();
            o.put_silence("s1", b"{}").unwrap();
            assert!(!o.take_merged(), "read at the start: nothing merged late");
        }
        let holder = Database::create(dir.path().join("notify.redb")).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        assert!(o.sent().unwrap().is_empty(), "the file is not read yet");
        assert!(!o.take_merged());
        drop(holder);
        o.try_file_now();
        assert!(o.take_merged(), "merged after the start");
        assert!(!o.take_merged(), "said once");
        assert!(o.sent().unwrap()["a\0before"].firing);
        assert_eq!(o.silences().unwrap().len(), 1);
    }

    #[test]
    fn a_page_delivered_while_the_file_is_merged_in_removes_itself_not_another() {
        // The file holds a page not yet delivered when the daemon restarts; it is
        // locked at the start, so a new page is queued in memory and a worker takes
        // it. The file is merged in while that page is on its way; the worker's
        // removal must take that page, not the file's.
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            let mut n = note("a/sns");
            n.receiver = "before".into();
            o.commit(&[n], &[], &[]).unwrap();
        }
        let holder = Database::create(dir.path().join("notify.redb")).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let mut n = note("a/sns");
        n.receiver = "during".into();
        o.commit(&[n], &[], &[]).unwrap();
        let (id, on_its_way) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(on_its_way.receiver, "during");
        drop(holder);
        o.try_file_now();
        assert!(o.health().ok, "{:?}", o.health());
        o.remove("a/sns", id).unwrap();
        assert_eq!(o.queued().unwrap(), 1);
        let (_, left) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(left.receiver, "before", "the file's page is still to go");
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_a_new_one_started() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.commit(&[note("a/sns")], &[], &[]).unwrap();
        }
        let path = dir.path().join("notify.redb");
        let mut bytes = std::fs::read(&path).unwrap();
        for b in bytes.iter_mut().take(4096) {
            *b = 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        o.commit(&[note("a/sns")], &[], &[]).unwrap();
        assert!(o.head("a/sns").unwrap().is_some());
        let h = o.health();
        assert!(h.ok, "{h:?}");
        assert_eq!(h.set_aside.len(), 1, "{h:?}");
        assert!(h.set_aside[0].contains("notify.redb.unreadable-"));
        assert_eq!(std::fs::read(&h.set_aside[0]).unwrap(), bytes);
    }

    #[test]
    fn a_file_redb_opens_but_cannot_read_is_kept_aside_and_paging_goes_on() {
        // One byte of a stored key no longer UTF-8: redb opens the file, and reading
        // the key panics inside redb. That must not stop the daemon at every start.
        let dir = tempfile::tempdir().unwrap();
        let key = "silence-0123456789abcdef0123456789abcdef";
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.put_silence(key, b"{}").unwrap();
            o.commit(&[note("a/sns")], &[], &[]).unwrap();
        }
        let path = dir.path().join("notify.redb");
        let mut bytes = std::fs::read(&path).unwrap();
        let mut hits = 0;
        for at in 0..bytes.len().saturating_sub(key.len()) {
            if &bytes[at..at + key.len()] == key.as_bytes() {
                bytes[at + 8] = 0xff;
                hits += 1;
            }
        }
        assert!(hits > 0, "the key is in the file");
        std::fs::write(&path, &bytes).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        o.commit(&[note("b/sns")], &[], &[]).unwrap();
        assert!(o.head("b/sns").unwrap().is_some());
        let h = o.health();
        assert!(h.ok, "{h:?}");
        assert_eq!(h.set_aside.len(), 1, "{h:?}");
        // Kept for an operator (redb has written to it since: not byte for byte).
        assert!(h.set_aside[0].contains("notify.redb.unreadable-"), "{h:?}");
        assert!(std::fs::metadata(&h.set_aside[0]).unwrap().len() > 0);
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert!(
            o.head("b/sns").unwrap().is_some(),
            "the new file holds the page"
        );
    }

    #[test]
    fn a_full_disk_pages_from_memory_and_nothing_is_lost_or_sent_twice_when_space_returns() {
        let fs = vigil_testkit::Tmpfs::new("4m");
        let state = fs.path.as_path();
        let o = Outbox::open(state).unwrap();
        o.commit(&[note("a/sns")], &[], &[]).unwrap();
        assert!(o.health().ok);
        let filler = vigil_testkit::fill(state);
        // Pages big enough that the file must grow: the commit fails on disk.
        let mut big = note("a/sns");
        big.events = vec![event(1.0, 0.0)];
        big.events[0]
            .annotations
            .insert("description".into(), "x".repeat(512 * 1024));
        let sent = Sent {
            firing: true,
            at: 5,
            event: big.events[0].clone(),
        };
        o.commit(
            &[big.clone(), big.clone()],
            &[("r\0f".into(), Some(sent))],
            &[],
        )
        .unwrap();
        let h = o.health();
        assert!(!h.ok && h.failing_since.is_some(), "{h:?}");
        // Paging goes on: the queue is answered from memory, deliveries are removed.
        assert_eq!(o.queued().unwrap(), 3);
        let (first, _) = o.head("a/sns").unwrap().unwrap();
        o.remove("a/sns", first).unwrap();
        let (second, n) = o.head("a/sns").unwrap().unwrap();
        assert_eq!(n, big);
        o.remove("a/sns", second).unwrap();
        // Still full: a try fails and changes nothing.
        o.try_file_now();
        assert!(!o.health().ok);
        std::fs::remove_file(&filler).unwrap();
        o.try_file_now();
        assert!(o.health().ok, "{:?}", o.health());
        drop(o);
        // After a restart: the one undelivered page and the log, nothing delivered.
        let o = Outbox::open(state).unwrap();
        assert_eq!(o.queued().unwrap(), 1);
        assert!(o.head("a/sns").unwrap().unwrap().0 > second);
        assert_eq!(o.sent().unwrap()["r\0f"].at, 5);
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
