//! The router: from the alerts the rules hold to the notifications to send.
//!
//! [`Router::decide`] is a pure step — alerts, silences, lease and time in; the
//! notifications to queue and the notification-log changes out — run after every
//! evaluation and whenever a timer it asked for is due. Its reasons to send, as
//! Alertmanager's dedup stage names them:
//!
//! - `first`: a firing alert this receiver was not told about — after `group_wait`
//!   for a new group, and at least `group_interval` after the group's previous
//!   notification (which damps a flapping alert);
//! - `repeat`: still firing `repeat_interval` after the last page;
//! - `resolved`: the alert this receiver was paged for resolved (or vanished, e.g. its
//!   rule was removed). Sent at once, never held for `group_interval`: the all-clear
//!   matters as much as the page, and Alertmanager's default `group_interval` would hold
//!   it for 5 minutes. Sent whatever mutes the alert, so no incident is left open.
//!
//! A page the group's timers hold back is not forgotten when its alert resolves
//! before they let it go (an outage that began within `group_interval` of the last
//! page and lasted less than the rest of it): when they do, the page goes out and
//! its resolve after it. Alertmanager sends nothing for such an outage. Held pages
//! are committed to the outbox with each decision ([`Decision::held`]), and a router
//! started after a restart takes them back ([`Router::restore_held`]): a restart during
//! the hold does not forget the outage either.
//!
//! Silences, maintenance windows, inhibition and the lease only hold pages back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::silence::Silence;
use super::{Route, Routing};
use crate::notify::lease::LeaseState;
use crate::notify::outbox::{Held, Sent};
use crate::notify::{AlertEvent, Notification};
use crate::rules::manager::RoutedAlert;

/// Why an alert is held back.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Muted {
    /// A silence (its id).
    Silence {
        /// The silence's id.
        id: String,
    },
    /// A maintenance window (its name).
    Window {
        /// The window's name.
        name: String,
    },
    /// Another firing alert (its alarm name).
    Inhibited {
        /// The inhibiting alert's alarm name.
        source: String,
    },
    /// Another sidecar holds the paging lease.
    Lease,
}

/// What one step decided.
#[derive(Debug, Default)]
pub struct Decision {
    /// Notifications to queue.
    pub notifications: Vec<Notification>,
    /// Notification-log changes to commit with them.
    pub sent: Vec<(String, Option<Sent>)>,
    /// Changes to the pages held back, to commit with them: key → page, or removal.
    pub held: Vec<(String, Option<Held>)>,
    /// Held pages this decision lets go, sent or dropped, as (group key,
    /// `receiver \0 fingerprint`): no longer held once it is committed.
    pub released: Vec<(String, String)>,
    /// When to run again at the latest (ms), for group waits and repeats.
    pub next_wake: Option<i64>,
    /// Held-back firing alerts and why, by alarm name.
    pub muted: BTreeMap<String, Muted>,
}

/// The hex SHA-256 of a label set, first 16 digits: stable across restarts,
/// sidecars and versions.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The alarm name: `<environment>-<alertname>-<first 8 digits of the fingerprint>`.
pub(crate) fn alarm_name(environment: &str, labels: &BTreeMap<String, String>) -> String {
    Identity::of(environment, labels).alarm_name
}

/// An alert's fingerprint and alarm name, from one hash of its labels.
struct Identity {
    /// See [`fingerprint`].
    fingerprint: String,
    /// See [`alarm_name`].
    alarm_name: String,
}

impl Identity {
    fn of(environment: &str, labels: &BTreeMap<String, String>) -> Identity {
        let fingerprint = fingerprint(labels);
        let name = labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert");
        let alarm_name = format!("{environment}-{name}-{}", &fingerprint[..8]);
        Identity {
            fingerprint,
            alarm_name,
        }
    }
}

/// Per-group timing.
#[derive(Debug, Clone, Default)]
struct GroupState {
    /// When the group first had something to send (ms).
    first_seen: Option<i64>,
    /// When it last sent a page (ms).
    last_flush: Option<i64>,
    /// Pages the group's timers hold back, by `receiver \0 fingerprint`: kept until
    /// one is sent, so that an alert resolving meanwhile is still told.
    held: BTreeMap<String, Held>,
}

/// The router's state between steps.
pub struct Router {
    /// The routing file.
    routing: Arc<Routing>,
    /// The environment, part of alarm names.
    environment: String,
    /// What each receiver was last sent per alert: `receiver \0 fingerprint`.
    sent: HashMap<String, Sent>,
    /// Group timing by group key.
    groups: HashMap<String, GroupState>,
    /// The held pages as the outbox has them, by [`held_key`].
    kept: HashMap<String, Held>,
    /// This sidecar's task, added as the `task` label to per-task alerts ("" when
    /// not known: they then page like any other).
    task: String,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn sent_key(receiver: &str, fingerprint: &str) -> String {
    format!("{receiver}\0{fingerprint}")
}

/// A held page's key in the outbox: `group key \0 receiver \0 fingerprint` (one alert
/// may be held in two groups, by two routes to one receiver).
fn held_key(group_key: &str, key: &str) -> String {
    format!("{group_key}\0{key}")
}

/// The group key of an alert under a route: the route and the grouped labels.
fn group_key(route: &Route, labels: &BTreeMap<String, String>) -> String {
    let all = route.group_by.iter().any(|g| g == "...");
    let parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| all || route.group_by.iter().any(|g| g == *k))
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{}:{{{}}}", route.id, parts.join(","))
}

impl Router {
    /// A router that remembers `sent` (from the outbox).
    pub fn new(routing: Arc<Routing>, environment: &str, sent: HashMap<String, Sent>) -> Router {
        Router {
            routing,
            environment: environment.to_string(),
            sent,
            groups: HashMap::new(),
            kept: HashMap::new(),
            task: String::new(),
        }
    }

    /// Takes back the pages held before a restart (from the outbox): each is told
    /// when its timers let it go, as if the router had never stopped (with its
    /// resolve, if its alert is over by then). Times from the future (a clock
    /// stepped back) hold no longer than the route's longest hold from now.
    pub fn restore_held(&mut self, held: HashMap<String, Held>) {
        for (k, h) in held {
            let Some(key) = k
                .strip_prefix(h.group_key.as_str())
                .and_then(|rest| rest.strip_prefix('\0'))
            else {
                tracing::error!(message = "A held page's key does not match its group; not restored.", key = %k.replace('\0', "/"));
                continue;
            };
            let group = self.groups.entry(h.group_key.clone()).or_default();
            group
                .held
                .entry(key.to_string())
                .or_insert_with(|| h.clone());
            self.kept.insert(k, h);
        }
    }

    /// The router of the sidecar of `task` (an ECS task id, or the host's name).
    pub fn for_task(mut self, task: &str) -> Router {
        self.task = task.to_string();
        self
    }

    /// `a` with this sidecar's task as its `task` label when it is a per-task
    /// alert (and has no `task` label of its own).
    fn localise(&self, a: &RoutedAlert) -> Option<RoutedAlert> {
        let get = |n: &str| a.label(n);
        if self.task.is_empty() || a.labels.contains_key("task") || !self.routing.per_task(get) {
            return None;
        }
        let mut local = a.clone();
        local.labels.insert("task".into(), self.task.clone());
        Some(local)
    }

    /// Takes the notification log again (the outbox merged in a file it could not
    /// read at the start): pages sent before the restart get their resolve, and
    /// are not sent again as new.
    pub fn reload_sent(&mut self, sent: HashMap<String, Sent>) {
        self.sent = sent;
    }

    /// Replaces the routing (a reload); what was sent is kept.
    pub fn set_routing(&mut self, routing: Arc<Routing>) {
        self.routing = routing;
    }

    /// Marks a decision as committed: its log changes become the router's memory.
    pub fn committed(&mut self, d: &Decision, now: i64) {
        for (k, v) in &d.sent {
            match v {
                Some(s) => {
                    self.sent.insert(k.clone(), s.clone());
                }
                None => {
                    self.sent.remove(k);
                }
            }
        }
        for n in &d.notifications {
            let Some(g) = self.groups.get_mut(&n.group_key) else {
                continue;
            };
            if n.events.iter().any(|e| e.firing) {
                g.last_flush = Some(now);
                g.first_seen = None;
            }
        }
        for (gk, key) in &d.released {
            if let Some(g) = self.groups.get_mut(gk) {
                g.held.remove(key);
            }
        }
        for (k, h) in &d.held {
            match h {
                Some(h) => self.kept.insert(k.clone(), h.clone()),
                None => self.kept.remove(k),
            };
        }
    }

    fn event(
        &self,
        a: &RoutedAlert,
        id: &Identity,
        reason: &str,
        firing: bool,
        now: i64,
    ) -> AlertEvent {
        AlertEvent {
            alarm_name: id.alarm_name.clone(),
            fingerprint: id.fingerprint.clone(),
            firing,
            reason: reason.to_string(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            value: a.value,
            expr: a.expr.clone(),
            for_seconds: a.for_seconds,
            starts_at: time(a.active_at),
            ends_at: a.resolved_at.map(time),
            changed_at: time(if firing {
                a.fired_at.unwrap_or(a.active_at)
            } else {
                a.resolved_at.unwrap_or(now)
            }),
            environment: self.environment.clone(),
        }
    }

    /// Why a firing alert is held back, if it is.
    fn muted(
        &self,
        a: &RoutedAlert,
        sources: &[(usize, &RoutedAlert)],
        silences: &[Silence],
        lease: LeaseState,
        now: DateTime<Utc>,
    ) -> Option<Muted> {
        let get = |n: &str| a.label(n);
        if let Some(s) = silences.iter().find(|s| s.mutes(get, now)) {
            return Some(Muted::Silence { id: s.id.clone() });
        }
        if let Some(w) = self.routing.windows.iter().find(|w| w.mutes(get, now)) {
            return Some(Muted::Window {
                name: w.name.clone(),
            });
        }
        for (rule, src) in sources {
            let r = &self.routing.inhibit[*rule];
            if std::ptr::eq(*src, a) || !super::matcher::all_match(&r.target, get) {
                continue;
            }
            // As Alertmanager: a label missing is a label empty.
            if r.equal.iter().all(|l| src.label(l) == a.label(l)) {
                return Some(Muted::Inhibited {
                    source: alarm_name(&self.environment, &src.labels),
                });
            }
        }
        if let Some(l) = &self.routing.lease
            && l.covers(get)
            && !self.routing.per_task(get)
            && !lease.pages()
        {
            return Some(Muted::Lease);
        }
        None
    }

    /// One step at `now` (ms).
    pub fn decide(
        &mut self,
        alerts: &[RoutedAlert],
        silences: &[Silence],
        lease: LeaseState,
        now: i64,
    ) -> Decision {
        let routing = self.routing.clone();
        let wall = time(now);
        let mut d = Decision::default();
        // Per-task alerts carry this sidecar's task in their identity.
        let localised: Vec<RoutedAlert>;
        let alerts = if routing.per_task.is_empty() || self.task.is_empty() {
            alerts
        } else {
            localised = alerts
                .iter()
                .map(|a| self.localise(a).unwrap_or_else(|| a.clone()))
                .collect();
            &localised
        };
        // Firing alerts that inhibit, with the rule they match.
        let sources: Vec<(usize, &RoutedAlert)> = routing
            .inhibit
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                alerts
                    .iter()
                    .filter(move |a| {
                        a.firing && super::matcher::all_match(&r.source, |n| a.label(n))
                    })
                    .map(move |a| (i, a))
            })
            .collect();
        // Events per group, by route; the (receiver, fingerprint) pairs still routed.
        let mut due: BTreeMap<String, (&Route, Vec<AlertEvent>)> = BTreeMap::new();
        let mut routed: HashSet<String> = HashSet::new();
        let mut live_groups: HashSet<String> = HashSet::new();
        // Held pages whose alert fires now (they go out, or stay held, as any page),
        // and when those no longer firing ended, where known.
        // A pending alert's held page stays held (its state was lost at a restart, or
        // it ended and failed again): not told as over while it fails.
        let mut firing_now: HashSet<String> = HashSet::new();
        let mut ended: HashMap<String, i64> = HashMap::new();
        for a in alerts {
            let id = Identity::of(&self.environment, &a.labels);
            let get = |n: &str| a.label(n);
            if a.pending {
                // Still failing, only not yet for `for` (its state may have been lost
                // at a restart): what was paged stays open, nothing new is sent.
                for route in routing.route.matching(get) {
                    let key = sent_key(&route.receiver, &id.fingerprint);
                    firing_now.insert(key.clone());
                    routed.insert(key);
                }
                continue;
            }
            let muted = if a.firing {
                self.muted(a, &sources, silences, lease, wall)
            } else {
                None
            };
            if let Some(m) = &muted {
                d.muted.insert(id.alarm_name.clone(), m.clone());
            }
            for route in routing.route.matching(get) {
                let key = sent_key(&route.receiver, &id.fingerprint);
                routed.insert(key.clone());
                let gk = group_key(route, &a.labels);
                let last = self.sent.get(&key);
                let event = match (a.firing, last) {
                    (false, Some(s)) if s.firing => {
                        Some(self.event(a, &id, "resolved", false, now))
                    }
                    (false, _) => {
                        ended.insert(key.clone(), a.resolved_at.unwrap_or(now));
                        None
                    }
                    (true, _) if muted.is_some() => {
                        // Muted now: what was held back is not told either.
                        if let Some(g) = self.groups.get_mut(&gk) {
                            g.held.remove(&key);
                        }
                        None
                    }
                    (true, Some(s)) if s.firing => {
                        if now.saturating_sub(s.at) >= ms(route.repeat_interval) {
                            Some(self.event(a, &id, "repeat", true, now))
                        } else {
                            let at = s.at.saturating_add(ms(route.repeat_interval));
                            d.next_wake = Some(d.next_wake.map_or(at, |w| w.min(at)));
                            None
                        }
                    }
                    (true, _) => {
                        // A new page waits for the group's timers.
                        let g = self.groups.entry(gk.clone()).or_default();
                        // Times from before a backward clock step are pulled back
                        // to now, so the step does not hold the page back.
                        let first_seen = g.first_seen.get_or_insert(now);
                        *first_seen = (*first_seen).min(now);
                        let mut ready = first_seen.saturating_add(ms(route.group_wait));
                        if let Some(last) = &mut g.last_flush {
                            *last = (*last).min(now);
                            ready = ready.max(last.saturating_add(ms(route.group_interval)));
                        }
                        firing_now.insert(key.clone());
                        if now >= ready {
                            d.released.push((gk.clone(), key.clone()));
                            Some(self.event(a, &id, "first", true, now))
                        } else {
                            d.next_wake = Some(d.next_wake.map_or(ready, |w| w.min(ready)));
                            let held = Held {
                                group_key: gk.clone(),
                                receiver: route.receiver.clone(),
                                event: self.event(a, &id, "first", true, now),
                                ready,
                                longest: ms(route.group_wait.max(route.group_interval)),
                            };
                            if let Some(g) = self.groups.get_mut(&gk) {
                                g.held.insert(key.clone(), held);
                            }
                            None
                        }
                    }
                };
                if a.firing {
                    live_groups.insert(gk.clone());
                }
                if let Some(e) = event {
                    due.entry(gk).or_insert((route, Vec::new())).1.push(e);
                }
            }
        }
        // Pages whose alert is gone (or now routed elsewhere) get their resolve.
        let mut vanished: Vec<(String, Sent)> = self
            .sent
            .iter()
            .filter(|(k, s)| s.firing && !routed.contains(*k))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        vanished.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, s) in vanished {
            let receiver = key.split('\0').next().unwrap_or("").to_string();
            let mut e = s.event.clone();
            e.firing = false;
            e.reason = "resolved".into();
            e.ends_at = Some(wall);
            e.changed_at = wall;
            self.notify(
                &routing,
                &receiver,
                &format!("vanished:{key}"),
                vec![e],
                now,
                &mut d,
            );
        }
        for (gk, (route, events)) in due {
            self.notify(&routing, &route.receiver, &gk, events, now, &mut d);
        }
        // A held page whose receiver was paged for the alert since (under another
        // group: the routing changed, a second route, the file merged in late) is
        // told already: dropped, never sent again nor resolved while it fires.
        for g in self.groups.values_mut() {
            g.held
                .retain(|key, _| self.sent.get(key).is_none_or(|s| !s.firing));
        }
        // Held pages whose alert is over: told when the timers let them go, the
        // page then its resolve (cleared from `held` once committed). One whose
        // receiver is gone from the routing is dropped, and said.
        let mut late: Vec<(String, Held, AlertEvent)> = Vec::new();
        for (gk, g) in &self.groups {
            for (key, h) in g.held.iter().filter(|(k, _)| !firing_now.contains(*k)) {
                // Times from before a backward clock step do not hold it longer.
                let ready = h.ready.min(now.saturating_add(h.longest));
                if now < ready {
                    d.next_wake = Some(d.next_wake.map_or(ready, |w| w.min(ready)));
                    continue;
                }
                d.released.push((gk.clone(), key.clone()));
                if routing.receiver(&h.receiver).is_none() {
                    tracing::error!(message = "A page held back before the routing changed has no receiver any more; it is not sent.", alarm = %h.event.alarm_name, receiver = %h.receiver);
                    continue;
                }
                let mut resolve = h.event.clone();
                let at = time(ended.get(key).copied().unwrap_or(now).min(now));
                resolve.firing = false;
                resolve.reason = "resolved".into();
                resolve.ends_at = Some(at);
                resolve.changed_at = at;
                late.push((gk.clone(), h.clone(), resolve));
            }
        }
        for (gk, h, resolve) in late {
            self.notify(&routing, &h.receiver, &gk, vec![h.event], now, &mut d);
            self.notify(&routing, &h.receiver, &gk, vec![resolve], now, &mut d);
        }
        d.held = self.held_changes(&d);
        // Groups with nothing firing start afresh (group_wait again).
        self.groups.retain(|k, g| {
            live_groups.contains(k)
                || !g.held.is_empty()
                || g.last_flush
                    .is_some_and(|t| now.saturating_sub(t) < ms(DEFAULT_GROUP_FORGET))
        });
        d
    }

    /// The pages held back by their group's timers: alarm name → when they go out
    /// (told then, with their resolve if the alert is over by then).
    pub fn held_pages(&self, now: i64) -> BTreeMap<String, DateTime<Utc>> {
        self.groups
            .values()
            .flat_map(|g| g.held.values())
            .map(|h| {
                let ready = h.ready.min(now.saturating_add(h.longest));
                (h.event.alarm_name.clone(), time(ready))
            })
            .collect()
    }

    /// What the outbox must change for its held pages to be those still held once
    /// `d` is committed. A page held again at a later step changes nothing (its
    /// timers are the same; the event first held is the one a restart tells).
    fn held_changes(&self, d: &Decision) -> Vec<(String, Option<Held>)> {
        let told: HashSet<String> = d
            .released
            .iter()
            .map(|(gk, key)| held_key(gk, key))
            .collect();
        let mut after: BTreeMap<String, &Held> = BTreeMap::new();
        for (gk, g) in &self.groups {
            for (key, h) in &g.held {
                let k = held_key(gk, key);
                if !told.contains(&k) {
                    after.insert(k, h);
                }
            }
        }
        let mut changes: Vec<(String, Option<Held>)> = after
            .iter()
            .filter(|(k, h)| {
                self.kept.get(*k).is_none_or(|kept| {
                    (kept.ready, kept.longest, &kept.receiver) != (h.ready, h.longest, &h.receiver)
                })
            })
            .map(|(k, h)| (k.clone(), Some((*h).clone())))
            .collect();
        let mut gone: Vec<&String> = self
            .kept
            .keys()
            .filter(|k| !after.contains_key(*k))
            .collect();
        gone.sort();
        changes.extend(gone.into_iter().map(|k| (k.clone(), None)));
        changes
    }

    /// Turns one group's events into notifications for each integration of
    /// `receiver`, and the log entries that record them.
    fn notify(
        &self,
        routing: &Routing,
        receiver: &str,
        group_key: &str,
        events: Vec<AlertEvent>,
        now: i64,
        d: &mut Decision,
    ) {
        for e in &events {
            let key = sent_key(receiver, &e.fingerprint);
            let entry = e.firing.then(|| Sent {
                firing: true,
                at: now,
                event: e.clone(),
            });
            d.sent.push((key, entry));
        }
        let Some(r) = routing.receiver(receiver) else {
            return;
        };
        for spec in &r.integrations {
            let events: Vec<AlertEvent> = events
                .iter()
                .filter(|e| e.firing || spec.send_resolved())
                .cloned()
                .collect();
            let target = format!("{}/{}", r.name, spec.kind());
            let make = |events: Vec<AlertEvent>| Notification {
                target: target.clone(),
                receiver: r.name.clone(),
                group_key: group_key.to_string(),
                events,
                created_at: time(now),
            };
            if spec.per_alert() {
                d.notifications
                    .extend(events.into_iter().map(|e| make(vec![e])));
            } else if !events.is_empty() {
                d.notifications.push(make(events));
            }
        }
    }
}

/// How long a group's timing is remembered after its last alert resolved, so that
/// an alert flapping off and on still waits `group_interval`.
const DEFAULT_GROUP_FORGET: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::Outbox;
    use crate::route::silence::NewSilence;
    use std::path::Path;

    const ROUTING: &str = "receivers:
  - name: critical
    sns:
      topic_arn: arn:aws:sns:us-east-1:123456789012:critical
  - name: warning
    webhook:
      url: http://127.0.0.1:1/hook
      send_resolved: false
route:
  receiver: warning
  group_by: ['...']
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - matchers: ['severity=\"critical\"']
      receiver: critical
inhibit_rules:
  - source_matchers: ['alertname=\"DatabaseDown\"']
    target_matchers: ['alertname=~\"SlowDatabaseQueries|HighErrorRate\"']
maintenance_windows:
  - name: monthly
    schedule: 0 0 2 8-14 * Sun
    duration: 2h
    matchers: ['severity=\"warning\"']
lease:
  redis: redis://127.0.0.1:1
  alerts:
    - ['component=~\"database|cache\"']
";

    fn router() -> Router {
        let r = super::super::parse(Path::new("r.yaml"), ROUTING, &HashMap::new()).unwrap();
        Router::new(Arc::new(r), "test", HashMap::new())
    }

    fn alert(name: &str, severity: &str, component: &str, firing: bool, t: i64) -> RoutedAlert {
        RoutedAlert {
            labels: BTreeMap::from([
                ("alertname".into(), name.into()),
                ("severity".into(), severity.into()),
                ("component".into(), component.into()),
            ]),
            annotations: BTreeMap::new(),
            firing,
            pending: false,
            value: 1.0,
            expr: "up == 0".into(),
            for_seconds: 0.0,
            active_at: t,
            fired_at: Some(t),
            resolved_at: (!firing).then_some(t),
        }
    }

    /// A step whose decision is committed, like the run loop does.
    fn step(
        r: &mut Router,
        alerts: &[RoutedAlert],
        silences: &[Silence],
        lease: LeaseState,
        now: i64,
    ) -> Decision {
        let d = r.decide(alerts, silences, lease, now);
        r.committed(&d, now);
        d
    }

    fn states(d: &Decision) -> Vec<(String, String, bool)> {
        d.notifications
            .iter()
            .flat_map(|n| {
                n.events
                    .iter()
                    .map(|e| (n.target.clone(), e.alertname().to_string(), e.firing))
            })
            .collect()
    }

    const T: i64 = 1_800_000_000_000;

    #[test]
    fn a_page_is_sent_once_repeated_after_the_interval_and_resolved_once() {
        let mut r = router();
        let a = alert("CacheDown", "critical", "cache", true, T);
        let d = step(&mut r, std::slice::from_ref(&a), &[], LeaseState::Holder, T);
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "CacheDown".into(), true)]
        );
        assert_eq!(d.notifications[0].events[0].reason, "first");
        for t in [T + 1000, T + 3_600_000] {
            assert!(
                step(&mut r, std::slice::from_ref(&a), &[], LeaseState::Holder, t)
                    .notifications
                    .is_empty()
            );
        }
        let d = step(
            &mut r,
            std::slice::from_ref(&a),
            &[],
            LeaseState::Holder,
            T + 4 * 3_600_000,
        );
        assert_eq!(d.notifications[0].events[0].reason, "repeat");
        let resolved = alert("CacheDown", "critical", "cache", false, T + 5 * 3_600_000);
        let d = step(
            &mut r,
            std::slice::from_ref(&resolved),
            &[],
            LeaseState::Holder,
            T + 5 * 3_600_000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "CacheDown".into(), false)]
        );
        assert!(
            step(
                &mut r,
                &[resolved],
                &[],
                LeaseState::Holder,
                T + 5 * 3_600_001
            )
            .notifications
            .is_empty()
        );
    }

    #[test]
    fn a_flapping_alert_pages_again_only_after_the_group_interval() {
        let mut r = router();
        let firing = alert("AppDown", "critical", "app", true, T);
        step(
            &mut r,
            std::slice::from_ref(&firing),
            &[],
            LeaseState::Holder,
            T,
        );
        let d = step(
            &mut r,
            &[alert("AppDown", "critical", "app", false, T + 1000)],
            &[],
            LeaseState::Holder,
            T + 1000,
        );
        assert_eq!(d.notifications.len(), 1, "the resolve is not held back");
        let again = alert("AppDown", "critical", "app", true, T + 2000);
        let d = step(
            &mut r,
            std::slice::from_ref(&again),
            &[],
            LeaseState::Holder,
            T + 2000,
        );
        assert!(d.notifications.is_empty());
        assert_eq!(d.next_wake, Some(T + 60_000));
        let d = step(&mut r, &[again], &[], LeaseState::Holder, T + 60_000);
        assert_eq!(d.notifications.len(), 1);
    }

    #[test]
    fn an_outage_the_group_interval_held_back_is_told_even_when_over_by_then() {
        // Paged and resolved; the cache goes down again a second later, which the
        // group interval holds back (1 m after the last page), and is back before
        // the hold ends. The outage is still told when it ends: its page, then its
        // resolve, once. Whether the alert stays listed resolved or vanishes.
        for vanishes in [false, true] {
            let mut r = router();
            let cache = |firing, t| alert("CacheDown", "critical", "cache", firing, t);
            step(&mut r, &[cache(true, T)], &[], LeaseState::Holder, T);
            step(
                &mut r,
                &[cache(false, T + 1000)],
                &[],
                LeaseState::Holder,
                T + 1000,
            );
            let d = step(
                &mut r,
                &[cache(true, T + 2000)],
                &[],
                LeaseState::Holder,
                T + 2000,
            );
            assert!(d.notifications.is_empty());
            let back = if vanishes {
                vec![]
            } else {
                vec![cache(false, T + 30_000)]
            };
            let d = step(&mut r, &back, &[], LeaseState::Holder, T + 30_000);
            assert!(d.notifications.is_empty(), "still held");
            assert_eq!(d.next_wake, Some(T + 60_000), "vanishes: {vanishes}");
            let d = step(&mut r, &back, &[], LeaseState::Holder, T + 60_000);
            assert_eq!(
                states(&d),
                [
                    ("critical/sns".into(), "CacheDown".into(), true),
                    ("critical/sns".into(), "CacheDown".into(), false)
                ],
                "vanishes: {vanishes}"
            );
            assert_eq!(d.notifications[0].events[0].starts_at, time(T + 2000));
            assert_eq!(d.notifications[0].events[0].reason, "first");
            let d = step(&mut r, &back, &[], LeaseState::Holder, T + 61_000);
            assert!(d.notifications.is_empty(), "told once");
            assert!(r.sent.values().all(|s| !s.firing));
        }
    }

    /// A step as the run loop takes it: committed to `outbox`, then to the router.
    fn step_kept(r: &mut Router, outbox: &Outbox, alerts: &[RoutedAlert], now: i64) -> Decision {
        let d = r.decide(alerts, &[], LeaseState::Holder, now);
        outbox.commit(&d.notifications, &d.sent, &d.held).unwrap();
        r.committed(&d, now);
        d
    }

    /// The router of a sidecar (re)started on the state directory `dir`.
    fn started(dir: &Path) -> (Router, Outbox) {
        let outbox = Outbox::open(dir).unwrap();
        let mut r = router();
        r.reload_sent(outbox.sent().unwrap());
        r.restore_held(outbox.held().unwrap());
        (r, outbox)
    }

    /// Paged at T and resolved at T + 1 s; down again at T + 2 s, a page the group
    /// interval holds back to T + 60 s.
    fn held_back(dir: &Path) {
        let (mut r, outbox) = started(dir);
        let cache = |firing, t| alert("CacheDown", "critical", "cache", firing, t);
        step_kept(&mut r, &outbox, &[cache(true, T)], T);
        step_kept(&mut r, &outbox, &[cache(false, T + 1000)], T + 1000);
        let d = step_kept(&mut r, &outbox, &[cache(true, T + 2000)], T + 2000);
        assert!(d.notifications.is_empty(), "held");
        assert_eq!(d.next_wake, Some(T + 60_000));
    }

    #[test]
    fn a_restart_during_the_hold_does_not_forget_an_outage_over_by_then() {
        let dir = tempfile::tempdir().unwrap();
        held_back(dir.path());
        // Over at T + 30 s; the sidecar restarts at T + 40 s, before the hold ends.
        let back = [alert("CacheDown", "critical", "cache", false, T + 30_000)];
        let (mut r, outbox) = started(dir.path());
        let d = step_kept(&mut r, &outbox, &back, T + 40_000);
        assert!(d.notifications.is_empty(), "still held after the restart");
        assert_eq!(d.next_wake, Some(T + 60_000));
        let d = step_kept(&mut r, &outbox, &back, T + 60_000);
        assert_eq!(
            states(&d),
            [
                ("critical/sns".into(), "CacheDown".into(), true),
                ("critical/sns".into(), "CacheDown".into(), false)
            ]
        );
        assert_eq!(d.notifications[0].events[0].starts_at, time(T + 2000));
        assert_eq!(d.notifications[1].events[0].ends_at, Some(time(T + 30_000)));
        drop((r, outbox));
        // Told once: the sidecar restarted again holds nothing and tells nothing.
        let (mut r, outbox) = started(dir.path());
        assert!(outbox.held().unwrap().is_empty());
        let d = step_kept(&mut r, &outbox, &back, T + 120_000);
        assert!(d.notifications.is_empty());
    }

    #[test]
    fn a_held_page_whose_alert_the_restart_finds_pending_waits_for_it_to_fire() {
        let dir = tempfile::tempdir().unwrap();
        held_back(dir.path());
        // The restart lost the alert's state: pending again, while the cache is down.
        let mut pending = alert("CacheDown", "critical", "cache", false, T + 40_000);
        (pending.pending, pending.resolved_at) = (true, None);
        let (mut r, outbox) = started(dir.path());
        for t in [T + 40_000, T + 60_000, T + 65_000] {
            let d = step_kept(&mut r, &outbox, std::slice::from_ref(&pending), t);
            assert!(d.notifications.is_empty(), "not told as over at {t}");
        }
        let d = step_kept(
            &mut r,
            &outbox,
            &[alert("CacheDown", "critical", "cache", true, T + 70_000)],
            T + 70_000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "CacheDown".into(), true)]
        );
        assert!(
            outbox.held().unwrap().is_empty(),
            "no longer held once paged"
        );
    }

    #[test]
    fn a_held_page_paged_meanwhile_is_not_told_again_when_its_hold_ends() {
        // The outbox file, locked at the restart, is merged in late: it holds a page
        // held back before, for an alert the restarted router has paged since.
        let dir = tempfile::tempdir().unwrap();
        held_back(dir.path());
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut r = router();
        let firing = [alert("CacheDown", "critical", "cache", true, T + 2000)];
        let d = step_kept(&mut r, &outbox, &firing, T + 40_000);
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "CacheDown".into(), true)]
        );
        r.restore_held(outbox.held().unwrap());
        for t in [T + 41_000, T + 60_000, T + 61_000] {
            let d = step_kept(&mut r, &outbox, &firing, t);
            assert!(
                d.notifications.is_empty(),
                "told twice at {t}: {:?}",
                states(&d)
            );
        }
        assert!(outbox.held().unwrap().is_empty());
    }

    #[test]
    fn a_held_page_whose_receiver_the_new_routing_dropped_is_let_go_once() {
        let dir = tempfile::tempdir().unwrap();
        held_back(dir.path());
        // Restarted with the critical receiver renamed.
        let renamed = ROUTING
            .replace("name: critical", "name: pager")
            .replace("receiver: critical", "receiver: pager");
        let routing = super::super::parse(Path::new("r.yaml"), &renamed, &HashMap::new()).unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut r = Router::new(Arc::new(routing), "test", outbox.sent().unwrap());
        r.restore_held(outbox.held().unwrap());
        let back = [alert("CacheDown", "critical", "cache", false, T + 30_000)];
        let d = step_kept(&mut r, &outbox, &back, T + 60_000);
        assert!(d.notifications.is_empty());
        assert!(
            outbox.held().unwrap().is_empty(),
            "let go, not kept for ever"
        );
        let d = step_kept(&mut r, &outbox, &back, T + 61_000);
        assert!(
            d.held.is_empty() && d.sent.is_empty() && d.released.is_empty(),
            "nothing more to commit: {d:?}"
        );
    }

    #[test]
    fn a_notification_log_read_late_resolves_what_was_paged_before_the_restart() {
        // Paged before a restart whose outbox file could not be read at first: the
        // router starts knowing nothing, then takes the log once the file is merged.
        let mut before = router();
        step(
            &mut before,
            &[alert("CacheDown", "critical", "cache", true, T)],
            &[],
            LeaseState::Holder,
            T,
        );
        let mut r = router();
        let back = alert("CacheDown", "critical", "cache", false, T + 60_000);
        assert!(
            step(
                &mut r,
                std::slice::from_ref(&back),
                &[],
                LeaseState::Holder,
                T + 60_000
            )
            .notifications
            .is_empty()
        );
        r.reload_sent(before.sent.clone());
        let d = step(
            &mut r,
            std::slice::from_ref(&back),
            &[],
            LeaseState::Holder,
            T + 61_000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "CacheDown".into(), false)]
        );
    }

    #[test]
    fn inhibition_mutes_targets_while_the_source_fires() {
        let mut r = router();
        let db = alert("DatabaseDown", "critical", "database", true, T);
        let slow = alert("SlowDatabaseQueries", "warning", "app", true, T);
        let d = step(
            &mut r,
            &[db.clone(), slow.clone()],
            &[],
            LeaseState::Holder,
            T,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "DatabaseDown".into(), true)]
        );
        assert!(matches!(
            d.muted.values().next(),
            Some(Muted::Inhibited { .. })
        ));
        // The database is back and the queries are still slow: now it pages.
        let d = step(
            &mut r,
            &[
                alert("DatabaseDown", "critical", "database", false, T + 5000),
                slow,
            ],
            &[],
            LeaseState::Holder,
            T + 5000,
        );
        assert_eq!(
            states(&d),
            [
                ("critical/sns".into(), "DatabaseDown".into(), false),
                ("warning/webhook".into(), "SlowDatabaseQueries".into(), true)
            ]
        );
    }

    #[test]
    fn a_silence_holds_pages_back_but_never_a_resolve() {
        let mut r = router();
        let a = alert("AppDown", "critical", "app", true, T);
        step(&mut r, std::slice::from_ref(&a), &[], LeaseState::Holder, T);
        let s: NewSilence = serde_json::from_str(&format!(
            r#"{{"matchers":["alertname=\"AppDown\""],"endsAt":"{}","createdBy":"a","comment":"deploy"}}"#,
            time(T + 3_600_000).to_rfc3339()
        ))
        .unwrap();
        let s = s.validate(time(T + 1000)).unwrap();
        // A second alert that fires under the silence is held back; the first,
        // paged before the silence, is not paged again.
        let b = alert("AppDown", "critical", "app2", true, T + 1000);
        let d = step(
            &mut r,
            &[a.clone(), b.clone()],
            std::slice::from_ref(&s),
            LeaseState::Holder,
            T + 1000,
        );
        assert!(d.notifications.is_empty(), "the new alert is silenced");
        assert_eq!(d.muted.len(), 2);
        let d = step(
            &mut r,
            &[
                alert("AppDown", "critical", "app", false, T + 2000),
                b.clone(),
            ],
            std::slice::from_ref(&s),
            LeaseState::Holder,
            T + 2000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), false)],
            "the paged one resolves"
        );
        let d = step(
            &mut r,
            &[b],
            std::slice::from_ref(&s),
            LeaseState::Holder,
            T + 3_600_000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), true)],
            "paged once the silence ends"
        );
    }

    #[test]
    fn the_maintenance_window_mutes_warnings_only() {
        let mut r = router();
        // 2026-12-13 is the second Sunday of December; 02:30 UTC.
        let t = DateTime::parse_from_rfc3339("2026-12-13T02:30:00Z")
            .unwrap()
            .timestamp_millis();
        let d = step(
            &mut r,
            &[
                alert("DiskSpaceLow", "warning", "host", true, t),
                alert("AppDown", "critical", "app", true, t),
            ],
            &[],
            LeaseState::Holder,
            t,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), true)]
        );
        assert_eq!(
            d.muted.values().next(),
            Some(&Muted::Window {
                name: "monthly".into()
            })
        );
        let after = t + 2 * 3_600_000;
        let d = step(
            &mut r,
            &[
                alert("DiskSpaceLow", "warning", "host", true, t),
                alert("AppDown", "critical", "app", true, t),
            ],
            &[],
            LeaseState::Holder,
            after,
        );
        assert_eq!(
            states(&d),
            [("warning/webhook".into(), "DiskSpaceLow".into(), true)]
        );
    }

    #[test]
    fn shared_alerts_page_from_the_lease_holder_or_from_everyone_without_redis() {
        let mut standby = router();
        let db = alert("DatabaseDown", "critical", "database", true, T);
        let app = alert("AppDown", "critical", "app", true, T);
        let d = step(
            &mut standby,
            &[db.clone(), app.clone()],
            &[],
            LeaseState::Standby,
            T,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), true)],
            "its own task's alert only"
        );
        assert_eq!(d.muted.values().next(), Some(&Muted::Lease));
        let d = step(
            &mut standby,
            &[db.clone(), app.clone()],
            &[],
            LeaseState::Unavailable,
            T + 1000,
        );
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "DatabaseDown".into(), true)]
        );
        let mut other = router();
        let d2 = step(&mut other, &[db], &[], LeaseState::Unavailable, T + 1000);
        assert_eq!(
            d.notifications[0].events[0].alarm_name, d2.notifications[0].events[0].alarm_name,
            "two sidecars page under one alarm name"
        );
    }

    #[test]
    fn a_page_whose_alert_vanished_is_resolved() {
        let mut r = router();
        step(
            &mut r,
            &[alert("AppDown", "critical", "app", true, T)],
            &[],
            LeaseState::Holder,
            T,
        );
        let d = step(&mut r, &[], &[], LeaseState::Holder, T + 1000);
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), false)]
        );
        assert!(
            step(&mut r, &[], &[], LeaseState::Holder, T + 2000)
                .notifications
                .is_empty()
        );
    }

    #[test]
    fn a_paged_alert_pending_again_after_lost_state_is_neither_resolved_nor_paged_twice() {
        let mut r = router();
        let firing = alert("AppDown", "critical", "app", true, T);
        assert_eq!(
            states(&step(
                &mut r,
                std::slice::from_ref(&firing),
                &[],
                LeaseState::Holder,
                T
            )),
            [("critical/sns".into(), "AppDown".into(), true)]
        );
        // A restart lost alerts.json: the same alert is pending again.
        let mut pending = alert("AppDown", "critical", "app", false, T + 1000);
        pending.pending = true;
        pending.resolved_at = None;
        for t in [T + 1000, T + 60_000] {
            let d = step(&mut r, &[pending.clone()], &[], LeaseState::Holder, t);
            assert!(d.notifications.is_empty(), "{:?}", states(&d));
        }
        // It fires again after `for`: the page already sent stands (no second one).
        let d = step(&mut r, &[firing], &[], LeaseState::Holder, T + 120_000);
        assert!(d.notifications.is_empty(), "{:?}", states(&d));
        // And when it really ends, the resolve goes out.
        let d = step(&mut r, &[], &[], LeaseState::Holder, T + 130_000);
        assert_eq!(
            states(&d),
            [("critical/sns".into(), "AppDown".into(), false)]
        );
    }

    #[test]
    fn per_task_alerts_page_from_every_task_under_its_own_name_and_shared_ones_once() {
        // The lease covers the app too: per_task wins over it.
        let text = format!(
            "{}per_task:\n  - ['component=~\"app|host\"']\n",
            ROUTING.replace("database|cache", "database|cache|app")
        );
        let routing =
            Arc::new(super::super::parse(Path::new("r.yaml"), &text, &HashMap::new()).unwrap());
        // Three sidecars: one holds the lease, two stand by.
        let mut tasks: Vec<(Router, LeaseState)> = ["t-a", "t-b", "t-c"]
            .iter()
            .zip([LeaseState::Holder, LeaseState::Standby, LeaseState::Standby])
            .map(|(t, l)| {
                (
                    Router::new(routing.clone(), "prod", HashMap::new()).for_task(t),
                    l,
                )
            })
            .collect();
        // Task b's app fails; every task sees the shared database down.
        let mut names = Vec::new();
        let mut shared = Vec::new();
        for (i, (r, lease)) in tasks.iter_mut().enumerate() {
            let mut alerts = vec![alert("DatabaseDown", "critical", "database", true, T)];
            if i == 1 {
                alerts.push(alert("AppDown", "critical", "app", true, T));
            }
            let d = step(r, &alerts, &[], *lease, T);
            for n in &d.notifications {
                for e in &n.events {
                    match e.alertname() {
                        "AppDown" => {
                            names.push((i, e.alarm_name.clone(), e.labels["task"].clone()))
                        }
                        _ => shared.push((i, e.alarm_name.clone())),
                    }
                }
            }
        }
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            (names[0].0, names[0].2.as_str()),
            (1, "t-b"),
            "paged by its own task, not the holder"
        );
        assert_eq!(shared.len(), 1, "the shared alert pages once: {shared:?}");
        assert_eq!(shared[0].0, 0, "from the holder");
        // All three tasks' apps fail: three incidents, three names.
        let mut all = Vec::new();
        for (r, lease) in tasks.iter_mut() {
            let d = step(
                r,
                &[alert("AppDown", "critical", "app", true, T)],
                &[],
                *lease,
                T + 1000,
            );
            all.extend(
                d.notifications
                    .iter()
                    .flat_map(|n| n.events.iter())
                    .filter(|e| e.firing && e.alertname() == "AppDown")
                    .map(|e| e.alarm_name.clone()),
            );
        }
        all.push(names[0].1.clone());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[test]
    fn alarm_names_depend_on_labels_and_environment_only() {
        let a = alert("CacheDown", "critical", "cache", true, T);
        let b = alert("CacheDown", "critical", "cache", false, T + 99);
        assert_eq!(alarm_name("prod", &a.labels), alarm_name("prod", &b.labels));
        assert_ne!(
            alarm_name("prod", &a.labels),
            alarm_name("staging", &a.labels)
        );
        assert!(alarm_name("prod", &a.labels).starts_with("prod-CacheDown-"));
    }
}
