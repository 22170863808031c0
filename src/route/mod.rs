//! Where alerts go: `alerts/routing.yaml`, read like the config (every problem as
//! `file:line:col`, `${VAR}` from the environment, unknown keys refused).
//!
//! - **Receivers** name integrations: `sns`, `pagerduty`, `webhook` (any of them, at
//!   most one of each kind per receiver). A receiver with none is a deliberate
//!   discard. A wrong setting is a load error, never a silent drop.
//! - **Routes** form a tree as in Alertmanager: the first child whose `matchers` all
//!   match takes the alert (and its siblings too when it says `continue: true`);
//!   `receiver`, `group_by` and the timers are inherited.
//! - **Inhibit rules**: a firing source alert mutes the targets that share its `equal`
//!   labels.
//! - **Maintenance windows** ([`window`]) and **silences** ([`silence`]) mute too.
//! - **Lease**: which alerts only the lease holder pages for ([`crate::notify::lease`]).
//!
//! Muting only ever holds back pages: a resolve is always sent for a page that was
//! sent, whatever started muting in between, so no incident is left open.

pub mod matcher;
pub mod router;
pub mod silence;
pub mod window;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::notify::{Backoff, IntegrationSpec};
use crate::settings::duration::{self, Zero};
use crate::settings::secret::SecretUrl;
use crate::settings::{Collector, Problems, yaml};
use matcher::Matcher;
use window::Window;

/// Defaults for a small team: page at once, remind every 4 h while firing.
pub(crate) const DEFAULT_GROUP_WAIT: Duration = Duration::ZERO;
/// How long after a group's notification a new alert in it waits.
pub(crate) const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(60);
/// How often a firing alert is sent again.
pub(crate) const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A validated routing file.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The file it came from.
    pub file: PathBuf,
    /// The receivers, by name.
    pub receivers: Vec<Receiver>,
    /// The routing tree's root.
    pub route: Route,
    /// Inhibit rules.
    pub inhibit: Vec<InhibitRule>,
    /// Maintenance windows.
    pub windows: Vec<Window>,
    /// The paging lease, when several sidecars run.
    pub lease: Option<LeaseConfig>,
    /// Alerts about one task's own app or host (any of these matcher sets): each
    /// sidecar pages for its own task, with the task in the alert's identity (a
    /// `task` label, so in the AlarmName and the PagerDuty dedup key), and the lease
    /// never holds them back: three bad tasks are three incidents, not one or none.
    pub per_task: Vec<Vec<Matcher>>,
    /// Retry pacing and the attempt timeout.
    pub backoff: Backoff,
    /// How long one delivery attempt may take.
    pub timeout: Duration,
}

/// A receiver and its integrations.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its name.
    pub name: String,
    /// Where it sends.
    pub integrations: Vec<IntegrationSpec>,
}

/// One node of the routing tree, with inherited settings filled in.
#[derive(Debug, Clone)]
pub struct Route {
    /// Which alerts it takes.
    pub matchers: Vec<Matcher>,
    /// Its receiver.
    pub receiver: String,
    /// Labels that split alerts into groups; `["..."]` means every label.
    pub group_by: Vec<String>,
    /// How long a new group waits before its first notification.
    pub group_wait: Duration,
    /// How long after a group's notification a new alert in it is sent.
    pub group_interval: Duration,
    /// How often a firing alert is sent again.
    pub repeat_interval: Duration,
    /// Whether matching siblings are tried too.
    pub continue_matching: bool,
    /// Child routes.
    pub routes: Vec<Route>,
    /// Position in the tree (`0`, `0.1`, …), part of group keys.
    pub id: String,
}

/// An inhibit rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// What a firing alert must match to mute others.
    pub source: Vec<Matcher>,
    /// What it mutes.
    pub target: Vec<Matcher>,
    /// Labels source and target must agree on.
    pub equal: Vec<String>,
}

/// The lease, as configured.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Redis holding it.
    pub redis: SecretUrl,
    /// Its length.
    pub ttl: Duration,
    /// Alerts only the holder pages for: any of these matcher sets.
    pub alerts: Vec<Vec<Matcher>>,
}

impl Routing {
    /// Whether an alert with these labels is about one task (see [`Routing::per_task`]).
    pub fn per_task<'a>(&self, get: impl Fn(&str) -> &'a str + Copy) -> bool {
        self.per_task.iter().any(|set| matcher::all_match(set, get))
    }
}

impl LeaseConfig {
    /// Whether an alert with these labels is shared (only the holder pages).
    pub fn covers<'a>(&self, get: impl Fn(&str) -> &'a str + Copy) -> bool {
        self.alerts.iter().any(|set| matcher::all_match(set, get))
    }
}

impl Route {
    /// The routes that take an alert with these labels (at least the root).
    pub fn matching<'a, 'l>(&'a self, get: impl Fn(&str) -> &'l str + Copy) -> Vec<&'a Route> {
        let mut out = Vec::new();
        self.collect(get, &mut out);
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Adds the deepest matching routes under `self` (which is known to match).
    fn collect<'a, 'l>(&'a self, get: impl Fn(&str) -> &'l str + Copy, out: &mut Vec<&'a Route>) {
        let mut any = false;
        for child in &self.routes {
            if matcher::all_match(&child.matchers, get) {
                any = true;
                child.collect(get, out);
                if !child.continue_matching {
                    break;
                }
            }
        }
        if !any {
            out.push(self);
        }
    }
}

impl Routing {
    /// The receiver called `name`.
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

// ---- The file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    receivers: Vec<RawReceiver>,
    route: RawRoute,
    #[serde(default)]
    inhibit_rules: Vec<RawInhibit>,
    #[serde(default)]
    maintenance_windows: Vec<RawWindow>,
    #[serde(default)]
    lease: Option<RawLease>,
    #[serde(default)]
    per_task: Vec<Vec<Spanned<String>>>,
    #[serde(default)]
    delivery: Option<RawDelivery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: Spanned<String>,
    #[serde(default)]
    sns: Option<crate::notify::sns::SnsSettings>,
    #[serde(default)]
    pagerduty: Option<crate::notify::pagerduty::PagerDutySettings>,
    #[serde(default)]
    webhook: Option<crate::notify::webhook::WebhookSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    receiver: Option<Spanned<String>>,
    #[serde(default)]
    matchers: Vec<Spanned<String>>,
    #[serde(default)]
    group_by: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    group_wait: Option<Spanned<String>>,
    #[serde(default)]
    group_interval: Option<Spanned<String>>,
    #[serde(default)]
    repeat_interval: Option<Spanned<String>>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInhibit {
    source_matchers: Vec<Spanned<String>>,
    target_matchers: Vec<Spanned<String>>,
    #[serde(default)]
    equal: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: Spanned<String>,
    schedule: Spanned<String>,
    duration: Spanned<String>,
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    matchers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    redis: Spanned<String>,
    #[serde(default)]
    ttl: Option<Spanned<String>>,
    alerts: Vec<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default)]
    initial_backoff: Option<Spanned<String>>,
    #[serde(default)]
    max_backoff: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

/// Reads and validates the routing file at `path`, `${VAR}` from the environment.
pub fn load(path: &Path) -> Result<Routing, Problems> {
    let env: HashMap<String, String> = std::env::vars().collect();
    parse(path, &yaml::read(path, "routing file")?, &env)
}

/// Validates routing `text` (named `path` in messages).
pub fn parse(path: &Path, text: &str, env: &HashMap<String, String>) -> Result<Routing, Problems> {
    yaml::parse(
        path,
        text,
        Some(env),
        |raw: RawRouting, c| validate(path, raw, c),
        |e, c| c.yaml(e),
    )
}

fn matchers(raw: &[Spanned<String>], c: &mut Collector) -> Vec<Matcher> {
    raw.iter()
        .filter_map(|m| match Matcher::parse(&m.value) {
            Ok(m) => Some(m),
            Err(e) => {
                c.at(m.referenced, e);
                None
            }
        })
        .collect()
}

fn duration_or(value: &Option<Spanned<String>>, default: Duration, c: &mut Collector) -> Duration {
    duration::at(value.as_ref(), Zero::Allowed, c).unwrap_or(default)
}

/// A duration that must be above zero (delivery's, and `group_interval` and
/// `repeat_interval`, as Alertmanager refuses zero for them): absent is `default`.
fn nonzero_duration_or(
    value: &Option<Spanned<String>>,
    default: Duration,
    c: &mut Collector,
) -> Duration {
    duration::at(value.as_ref(), Zero::Refused, c).unwrap_or(default)
}

/// Settings a route passes to its children.
struct Inherited {
    receiver: String,
    group_by: Vec<String>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

fn route(
    raw: &RawRoute,
    parent: &Inherited,
    id: String,
    receivers: &HashSet<String>,
    c: &mut Collector,
) -> Route {
    let receiver = match &raw.receiver {
        Some(r) => {
            if !receivers.contains(&r.value) {
                c.at(
                    r.referenced,
                    format!("no receiver is named {:?}; receivers are: {}", r.value, {
                        let mut names: Vec<_> = receivers.iter().cloned().collect();
                        names.sort();
                        names.join(", ")
                    }),
                );
            }
            r.value.clone()
        }
        None => parent.receiver.clone(),
    };
    let group_by = match &raw.group_by {
        Some(g) => g.iter().map(|s| s.value.clone()).collect(),
        None => parent.group_by.clone(),
    };
    // Zero would page again at every step: refused, as Alertmanager does.
    let group_interval = nonzero_duration_or(&raw.group_interval, parent.group_interval, c);
    let repeat_interval = nonzero_duration_or(&raw.repeat_interval, parent.repeat_interval, c);
    if let Some(r) = &raw.repeat_interval
        && repeat_interval < group_interval
    {
        c.at(
            r.referenced,
            "repeat_interval must not be shorter than group_interval",
        );
    }
    let inherited = Inherited {
        receiver: receiver.clone(),
        group_by: group_by.clone(),
        group_wait: duration_or(&raw.group_wait, parent.group_wait, c),
        group_interval,
        repeat_interval,
    };
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(r, &inherited, format!("{id}.{i}"), receivers, c))
        .collect();
    Route {
        matchers: matchers(&raw.matchers, c),
        receiver,
        group_by,
        group_wait: inherited.group_wait,
        group_interval,
        repeat_interval,
        continue_matching: raw.continue_matching,
        routes,
        id,
    }
}

fn validate(path: &Path, raw: RawRouting, c: &mut Collector) -> Option<Routing> {
    let mut receivers = Vec::new();
    let mut names = HashSet::new();
    for r in raw.receivers {
        if !names.insert(r.name.value.clone()) {
            c.at(
                r.name.referenced,
                format!("receiver {:?} is defined twice", r.name.value),
            );
        }
        let mut integrations = Vec::new();
        if let Some(s) = r.sns {
            integrations.extend(s.validate(c).map(IntegrationSpec::Sns));
        }
        if let Some(s) = r.pagerduty {
            integrations.extend(s.validate(c).map(IntegrationSpec::PagerDuty));
        }
        if let Some(s) = r.webhook {
            integrations.extend(s.validate(c).map(IntegrationSpec::Webhook));
        }
        receivers.push(Receiver {
            name: r.name.value.clone(),
            integrations,
        });
    }
    if raw.route.receiver.is_none() {
        c.at_line_col(0, 0, "the top-level route needs a receiver");
    }
    if !raw.route.matchers.is_empty() {
        c.at(
            raw.route.matchers[0].referenced,
            "the top-level route takes every alert; it cannot have matchers",
        );
    }
    let root = route(
        &raw.route,
        &Inherited {
            receiver: String::new(),
            group_by: vec!["alertname".into()],
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
        },
        "0".into(),
        &names,
        c,
    );
    let inhibit = raw
        .inhibit_rules
        .iter()
        .map(|r| InhibitRule {
            source: matchers(&r.source_matchers, c),
            target: matchers(&r.target_matchers, c),
            equal: r.equal.clone(),
        })
        .collect();
    let mut windows = Vec::new();
    for w in &raw.maintenance_windows {
        let Some(length) = duration::at(Some(&w.duration), Zero::Refused, c) else {
            continue;
        };
        let tz = w
            .time_zone
            .as_ref()
            .map(|t| t.value.as_str())
            .unwrap_or("UTC");
        match Window::new(
            &w.name.value,
            &w.schedule.value,
            length,
            tz,
            matchers(&w.matchers, c),
        ) {
            Ok(x) => windows.push(x),
            Err((field, message)) => {
                let at = match field {
                    "time_zone" => w.time_zone.as_ref().map(|t| t.referenced),
                    "duration" => Some(w.duration.referenced),
                    _ => Some(w.schedule.referenced),
                };
                c.at(at.unwrap_or(w.name.referenced), message);
            }
        }
    }
    let lease = raw.lease.as_ref().and_then(|l| {
        let ttl = duration_or(&l.ttl, Duration::from_secs(15), c);
        if ttl < Duration::from_secs(1)
            && let Some(t) = &l.ttl
        {
            c.at(t.referenced, "ttl must be at least 1s");
        }
        let alerts = l.alerts.iter().map(|set| matchers(set, c)).collect();
        Some(LeaseConfig {
            redis: crate::probe::redis::redis_url("redis", &l.redis, c)?,
            ttl,
            alerts,
        })
    });
    let per_task = raw.per_task.iter().map(|set| matchers(set, c)).collect();
    let d = raw.delivery.as_ref();
    // Delivery's durations must be above zero: a zero timeout fails every attempt,
    // a zero backoff retries in a busy loop.
    let initial_backoff = d.and_then(|d| d.initial_backoff.clone());
    let max_backoff = d.and_then(|d| d.max_backoff.clone());
    let backoff = Backoff {
        initial: nonzero_duration_or(&initial_backoff, Duration::from_secs(1), c),
        max: nonzero_duration_or(&max_backoff, Duration::from_secs(30), c),
    };
    if backoff.max < backoff.initial
        && let Some(m) = max_backoff.as_ref().or(initial_backoff.as_ref())
    {
        c.at(
            m.referenced,
            format!(
                "max_backoff {} is shorter than initial_backoff {}",
                duration::format(backoff.max),
                duration::format(backoff.initial)
            ),
        );
    }
    let timeout = nonzero_duration_or(
        &d.and_then(|d| d.timeout.clone()),
        Duration::from_secs(10),
        c,
    );
    Some(Routing {
        file: path.to_path_buf(),
        receivers,
        route: root,
        inhibit,
        windows,
        lease,
        per_task,
        backoff,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Routing, Problems> {
        let env = HashMap::from([(
            "TOPIC".to_string(),
            "arn:aws:sns:eu-west-1:123456789012:critical".to_string(),
        )]);
        parse(Path::new("routing.yaml"), text, &env)
    }

    const GOOD: &str = "receivers:
  - name: critical
    sns:
      topic_arn: ${TOPIC}
  - name: warning
    webhook:
      url: http://127.0.0.1:1/hook
  - name: discard
route:
  receiver: warning
  group_by: [alertname]
  routes:
    - matchers: ['severity=\"critical\"']
      receiver: critical
      continue: true
    - matchers: ['severity=~\"critical|warning\"']
      group_wait: 5s
    - matchers: ['alertname=\"Watchdog\"']
      receiver: discard
";

    #[test]
    fn routes_pick_the_first_match_and_continue_when_asked() {
        let r = parse_str(GOOD).unwrap();
        let labels = |sev: &'static str| move |n: &str| if n == "severity" { sev } else { "" };
        let crit = r.route.matching(labels("critical"));
        assert_eq!(
            crit.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["0.0", "0.1"]
        );
        assert_eq!(crit[0].receiver, "critical");
        assert_eq!(crit[1].receiver, "warning", "inherited");
        assert_eq!(crit[1].group_wait, Duration::from_secs(5));
        assert_eq!(crit[0].repeat_interval, DEFAULT_REPEAT_INTERVAL);
        assert_eq!(r.route.matching(labels("info"))[0].id, "0");
        let IntegrationSpec::Sns(s) = &r.receiver("critical").unwrap().integrations[0] else {
            panic!()
        };
        assert_eq!(
            (s.region.as_str(), s.account.as_str()),
            ("eu-west-1", "123456789012")
        );
        assert!(r.receiver("discard").unwrap().integrations.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = "receivers:
  - name: a
    sns:
      topic_arn: arn:aws:sns:eu-west-1:12:x
  - name: b
    pagerduty:
      routing_key: short
route:
  receiver: c
  routes:
    - matchers: ['severity']
maintenance_windows:
  - name: m
    schedule: 0 0 2 * *
    duration: 2h
";
        let err = parse_str(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "routing.yaml:4:18: invalid topic_arn \"arn:aws:sns:eu-west-1:12:x\": expected arn:aws:sns:<region>:<12-digit account>:<topic>
routing.yaml:7:20: routing_key must be the 32 letters and digits of an Events API v2 integration key (got 5 characters)
routing.yaml:9:13: no receiver is named \"c\"; receivers are: a, b
routing.yaml:11:18: \"severity\" is not a matcher: write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\"
routing.yaml:14:15: invalid schedule \"0 0 2 * *\": write six or seven fields with seconds first, e.g. \"0 0 2 8-14 * Sun\""
        );
    }

    #[test]
    fn an_unset_variable_is_named() {
        let err = parse_str(
            "receivers:\n  - name: a\n    sns:\n      topic_arn: ${NOPE}\nroute:\n  receiver: a\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("routing.yaml:4:18: environment variable NOPE is not set"),
            "{err}"
        );
    }
}
