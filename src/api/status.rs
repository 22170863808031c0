//! `/status`: the on-call engineer's page, as JSON (default), plain text
//! (`?format=text`, also what `vigil status` prints) or HTML (for a browser).

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::{Component, ComponentStatus, Overall};
use crate::rules::alerting::State;
use crate::rules::manager::AlertView;

/// The `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The overall verdict.
    pub status: Overall,
    /// Vigil's version.
    pub version: String,
    /// The deployment environment from the config.
    pub environment: String,
    /// When the daemon started.
    pub started_at: DateTime<Utc>,
    /// Seconds since the start.
    pub uptime_seconds: u64,
    /// Which config runs (see `Config::hash`).
    pub config_hash: String,
    /// The last reload, if any: when, and why it failed.
    #[serde(default)]
    pub last_reload: Option<crate::api::ReloadOutcome>,
    /// When this document was made.
    pub generated_at: DateTime<Utc>,
    /// Every component, in config order.
    pub components: Vec<Component>,
    /// Alerts, the series store and the rules.
    #[serde(default)]
    pub engine: crate::rules::manager::EngineView,
    /// Paging: the lease, muted alerts, windows, the outbox per integration.
    #[serde(default)]
    pub paging: Option<crate::paging::PagingView>,
    /// CloudWatch publishing: the last success, the last error, the queue.
    #[serde(default)]
    pub publishing: Option<crate::publish::PublishView>,
    /// The ECS task this Vigil runs in, when on ECS.
    #[serde(default)]
    pub task: Option<crate::ecs::EcsView>,
    /// The scrape targets: up or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrapes: Vec<crate::scrape::TargetView>,
    /// The past: uptime, daily bars, latency, incidents, the pipeline's heartbeat.
    #[serde(default)]
    pub history: Option<crate::api::history::HistorySummary>,
    /// Every task of the fleet, this one first.
    #[serde(default)]
    pub fleet: Option<crate::fleet::FleetView>,
    /// Silences muting now or later, with who set them and until when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<SilenceSummary>,
}

/// A silence as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceSummary {
    /// Its id.
    pub id: String,
    /// Its matchers, as written.
    pub matchers: Vec<String>,
    /// From when.
    pub starts_at: DateTime<Utc>,
    /// Until when.
    pub ends_at: DateTime<Utc>,
    /// Who set it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

pub(crate) use super::history::ago;

fn status_word(s: ComponentStatus) -> &'static str {
    match s {
        ComponentStatus::Unknown => "unknown",
        ComponentStatus::Ok => "ok",
        ComponentStatus::Down => "DOWN",
    }
}

fn overall_word(s: Overall) -> &'static str {
    match s {
        Overall::Ok => "ok",
        Overall::Degraded => "DEGRADED",
        Overall::Down => "DOWN",
    }
}

fn latency(c: &Component) -> String {
    c.latency_ms
        .map(|ms| format!("{ms:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn uptime(r: &StatusReport) -> String {
    crate::settings::duration::format(std::time::Duration::from_secs(r.uptime_seconds.max(1)))
}

/// The plain-text table.
pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vigil {} · {} · status {} · up {} · config {} · {}",
        r.version,
        r.environment,
        overall_word(r.status),
        uptime(r),
        r.config_hash,
        r.generated_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    if let Some(reload) = &r.last_reload
        && reload.ok
        && !reload.restart_needed.is_empty()
    {
        let _ = writeln!(
            out,
            "RELOADED at {}, but these take effect only at the next restart: {}",
            reload.at.format("%Y-%m-%dT%H:%M:%SZ"),
            reload.restart_needed.join(", ")
        );
    }
    if let Some(reload) = &r.last_reload
        && !reload.ok
    {
        let _ = writeln!(
            out,
            "RELOAD FAILED at {}; the previous configuration keeps running:\n{}",
            reload.at.format("%Y-%m-%dT%H:%M:%SZ"),
            reload.error.as_deref().unwrap_or("")
        );
    }
    out.push('\n');
    let rows: Vec<[String; 7]> = r
        .components
        .iter()
        .map(|c| {
            let note = match (&c.status, &c.last_error) {
                (ComponentStatus::Down, Some(e)) => e.clone(),
                _ => c.target.clone(),
            };
            [
                format!(
                    "{}{}",
                    c.name,
                    if c.critical { "" } else { " (non-critical)" }
                ),
                c.kind.clone(),
                status_word(c.status).to_string(),
                latency(c),
                ago(c.last_success, r.generated_at),
                c.consecutive_failures.to_string(),
                note,
            ]
        })
        .collect();
    let header = [
        "COMPONENT",
        "KIND",
        "STATUS",
        "LATENCY",
        "LAST SUCCESS",
        "FAILS",
        "TARGET / LAST ERROR",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else if i == 3 || i == 5 {
                let _ = write!(l, "{:>w$}  ", cell, w = widths[i]);
            } else {
                let _ = write!(l, "{:<w$}  ", cell, w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out.push('\n');
    if let Some(h) = &r.history {
        let _ = writeln!(out, "{}", h.pipeline.text);
        for c in &h.components {
            let u = &c.uptime;
            let p = |v: Option<f64>| v.map_or("-".to_string(), crate::api::history::uptime_text);
            let _ = writeln!(
                out,
                "  {}: uptime 24h {} · 7d {} · 30d {} · 90d {}",
                c.name,
                p(u.h24),
                p(u.d7),
                p(u.d30),
                p(u.d90)
            );
        }
        for problem in &h.problems {
            let _ = writeln!(out, "HISTORY: {problem}");
        }
        out.push('\n');
    }
    out.push_str(&render_alerts_text(r));
    if let Some(h) = r.history.as_ref().filter(|h| !h.incidents.is_empty()) {
        out.push_str("\nINCIDENTS (newest first)\n");
        for i in h.incidents.iter().take(10) {
            let end = match i.resolved_at {
                Some(t) => format!(
                    "for {}",
                    crate::settings::duration::format(std::time::Duration::from_secs(
                        (t - i.fired_at).num_seconds().max(0) as u64
                    ))
                ),
                None => "STILL FIRING".to_string(),
            };
            let paged: Vec<String> = i
                .pages
                .iter()
                .map(|p| {
                    format!(
                        "{} {}{}",
                        p.target,
                        if p.firing { "firing" } else { "resolved" },
                        if p.delivered { "" } else { " NOT DELIVERED" }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  {} {} {end}; paged: {}{}",
                i.fired_at.format("%Y-%m-%dT%H:%M:%SZ"),
                i.alertname,
                if paged.is_empty() {
                    "nobody".to_string()
                } else {
                    paged.join(", ")
                },
                i.mutes
                    .iter()
                    .map(|m| format!("; held back: {}", m.why))
                    .collect::<String>()
            );
        }
    }
    if let Some(f) = r
        .fleet
        .as_ref()
        .filter(|f| f.tasks.len() > 1 || f.unavailable.is_none())
    {
        out.push_str("\nFLEET\n");
        for t in &f.tasks {
            let word = match (t.state, t.snapshot.as_ref().map(|s| s.status)) {
                (crate::fleet::TaskState::Missing, _) => "MISSING".to_string(),
                (crate::fleet::TaskState::Unreadable, _) => "unreadable".to_string(),
                (_, Some(s)) => overall_word(s).to_string(),
                (_, None) => "unknown".to_string(),
            };
            let _ = writeln!(
                out,
                "  {}{} {word}, last seen {}",
                t.task,
                if t.this { " (this task)" } else { "" },
                ago(t.last_seen, r.generated_at)
            );
        }
    }
    let paging = paging_lines(r);
    if !paging.is_empty() {
        out.push_str("\nPAGING\n");
        for l in paging {
            let _ = writeln!(out, "  {l}");
        }
    }
    let scrapes = scrape_lines(r);
    if !scrapes.is_empty() {
        out.push_str("\nSCRAPES\n");
        for l in scrapes {
            let _ = writeln!(out, "  {l}");
        }
    }
    let publishing = publishing_lines(r);
    if !publishing.is_empty() {
        out.push_str("\nPUBLISHING\n");
        for l in publishing {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// The store in one line: series, samples, bytes against the budget, and what the
/// budget cost (a shorter retention, dropped series).
pub(crate) fn store_summary(e: &crate::rules::manager::EngineView) -> String {
    let mut out = format!(
        "{} series (max {}), {} samples",
        e.series, e.max_series, e.samples
    );
    if e.max_bytes > 0 {
        let mib = |b: usize| b as f64 / f64::from(1 << 20);
        let _ = write!(
            out,
            ", {:.1} MiB of {:.0} MiB",
            mib(e.bytes),
            mib(e.max_bytes)
        );
    }
    if e.evicted_samples > 0 {
        let _ = write!(
            out,
            "; retention in effect {} for the byte budget ({} samples dropped early)",
            crate::settings::duration::format(std::time::Duration::from_secs_f64(
                e.retention_seconds.max(0.0)
            )),
            e.evicted_samples
        );
    }
    if e.dropped_series > 0 {
        let _ = write!(
            out,
            "; {} new series dropped (store full)",
            e.dropped_series
        );
    }
    out
}

/// What the page says about the scrape targets, one line each.
pub(crate) fn scrape_lines(r: &StatusReport) -> Vec<String> {
    let now = r.generated_at;
    let mut out = Vec::new();
    for s in &r.scrapes {
        out.push(match (&s.error, s.last_scrape) {
            (_, None) => format!("scrape {} ({}): not yet scraped", s.job, s.url),
            (None, at) => format!(
                "scrape {} ({}): up, {} samples in {:.3}s, {}",
                s.job,
                s.url,
                s.samples,
                s.duration_seconds,
                ago(at, now)
            ),
            (Some(e), at) => format!("scrape {} ({}): DOWN {}: {e}", s.job, s.url, ago(at, now)),
        });
    }
    out
}

/// What the page says about CloudWatch publishing and the ECS task, one line each.
pub(crate) fn publishing_lines(r: &StatusReport) -> Vec<String> {
    let now = r.generated_at;
    let mut out = Vec::new();
    if let Some(p) = &r.publishing {
        out.push(format!(
            "cloudwatch ({}) {} every {}s: last publish {}, {} queued, {} sent, {} dropped",
            p.mode,
            p.namespace,
            p.interval_seconds,
            ago(p.last_success, now),
            p.queued,
            p.datums_sent,
            p.dropped
        ));
        if let Some(e) = &p.last_error {
            out.push(format!(
                "last error {}: {}",
                ago(Some(e.at), now),
                e.message
            ));
        }
    }
    if let Some(t) = &r.task {
        let pct = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{:.0} %", v * 100.0));
        match &t.task {
            Some(task) => out.push(format!(
                "task {} ({}) in cluster {}, {}: memory {}, CPU {}",
                task.task_id,
                task.task_definition,
                task.cluster,
                task.availability_zone,
                pct(t.memory_used_ratio),
                pct(t.cpu_used_ratio)
            )),
            None => out.push("task: the ECS metadata endpoint did not answer".to_string()),
        }
        if let Some(e) = &t.last_error {
            out.push(format!("task stats: {e}"));
        }
    }
    out
}

/// What the page says about paging, one line each: the lease, windows, silences,
/// held-back alerts, and each integration's queue.
pub(crate) fn paging_lines(r: &StatusReport) -> Vec<String> {
    let Some(p) = &r.paging else {
        return vec!["not configured: alerts page nobody (set routing: in the config)".into()];
    };
    let now = r.generated_at;
    let mut out = Vec::new();
    if let Some(e) = &p.storage.error {
        out.push(format!(
            "STORAGE FAILING{}: notify.redb cannot be written ({e}); pages go out from memory and the file is retried every {} s",
            p.storage
                .failing_since
                .map(|t| format!(" since {}", ago(Some(t), now)))
                .unwrap_or_default(),
            crate::notify::outbox::RETRY_EVERY.as_secs()
        ));
    }
    for f in &p.storage.set_aside {
        out.push(format!(
            "STORAGE: an unreadable notify.redb was kept as {f}; alerts paged before it may be paged again"
        ));
    }
    if !p.task.is_empty() {
        out.push(format!(
            "task: {} (alerts about this task's app and host page from here, under its name)",
            p.task
        ));
    }
    if p.dead_letters > 0 {
        out.push(format!(
            "DEAD LETTERS: {} outbox entries could not be read; kept in notify.redb (table dead_letters) for a person to look at",
            p.dead_letters
        ));
    }
    if let Some(l) = p.lease {
        let word = match l {
            crate::notify::lease::LeaseState::Holder => {
                "held by this sidecar: it pages for shared alerts"
            }
            crate::notify::lease::LeaseState::Standby => {
                "held by another sidecar: shared alerts page from there"
            }
            crate::notify::lease::LeaseState::Unavailable => {
                "REDIS UNREACHABLE: every sidecar pages for shared alerts"
            }
            crate::notify::lease::LeaseState::Unknown => "not known yet",
        };
        out.push(format!("lease: {word}"));
    }
    for w in &p.windows {
        match (w.active_until, w.next_start) {
            (Some(end), _) => out.push(format!(
                "MAINTENANCE WINDOW {} active until {} ({}), muting {}",
                w.name,
                end.format("%Y-%m-%dT%H:%M:%SZ"),
                crate::settings::duration::format((end - now).to_std().unwrap_or_default()),
                if w.matchers.is_empty() {
                    "everything".to_string()
                } else {
                    w.matchers.join(",")
                }
            )),
            (None, Some(next)) => out.push(format!(
                "maintenance window {}: next starts {}",
                w.name,
                next.format("%Y-%m-%dT%H:%M:%SZ")
            )),
            (None, None) => out.push(format!("maintenance window {}: never starts again", w.name)),
        }
    }
    if p.active_silences > 0 {
        out.push(format!(
            "{} silence(s) active (GET /api/silences)",
            p.active_silences
        ));
    }
    for (alarm, why) in &p.muted {
        let why = match why {
            crate::route::router::Muted::Silence { id } => format!("silence {id}"),
            crate::route::router::Muted::Window { name } => format!("maintenance window {name}"),
            crate::route::router::Muted::Inhibited { source } => format!("inhibited by {source}"),
            crate::route::router::Muted::Lease => "another sidecar pages for it".to_string(),
        };
        out.push(format!("held back: {alarm} ({why})"));
    }
    for (alarm, at) in &p.held {
        out.push(format!(
            "page held by its group's timers: {alarm}, goes out {}",
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    for (target, s) in &p.targets {
        let mut l = format!(
            "{target}: {} queued, {} delivered, {} failed attempts",
            s.depth, s.delivered, s.failures
        );
        if let Some(oldest) = s.oldest {
            l.push_str(&format!(", oldest queued {}", ago(Some(oldest), now)));
        }
        if s.dropped > 0 {
            l.push_str(&format!(", {} DROPPED", s.dropped));
        }
        if let Some(e) = &s.last_error {
            l.push_str(&format!("; last error: {e}"));
        }
        out.push(l);
    }
    out
}

fn alert_state_word(a: &AlertView) -> &'static str {
    match a.state {
        State::Firing => "FIRING",
        State::Pending => "pending",
        State::Inactive => "resolved",
    }
}

/// The alerts and store part of the text page.
fn render_alerts_text(r: &StatusReport) -> String {
    let e = &r.engine;
    let mut out = String::new();
    // The pipeline's own heartbeat (the Watchdog) is said above, not listed here.
    let shown: Vec<&AlertView> = e
        .alerts
        .iter()
        .filter(|a| {
            r.history.is_none()
                || a.labels.get("severity").map(String::as_str)
                    != Some(crate::history::PIPELINE_SEVERITY)
        })
        .collect();
    if shown.is_empty() {
        out.push_str("No alerts firing or pending.\n");
    } else {
        let firing = shown.iter().filter(|a| a.state == State::Firing).count();
        let _ = writeln!(
            out,
            "ALERTS: {firing} firing, {} pending",
            shown.len() - firing
        );
        for a in shown {
            let since = ago(Some(a.fired_at.unwrap_or(a.active_at)), r.generated_at);
            let summary = a
                .annotations
                .get("summary")
                .map(String::as_str)
                .unwrap_or("");
            let _ = writeln!(
                out,
                "  {:<8} {} since {since}: {summary}",
                alert_state_word(a),
                a.name
            );
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                out,
                "           {}  value {}",
                labels.join(" "),
                crate::rules::template::go_float(a.value)
            );
            if let Some(url) = a.annotations.get("runbook_url") {
                let _ = writeln!(out, "           runbook: {url}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nstore: {}; {} rules in {} groups",
        store_summary(e)
            .to_string()
            .replace("new series dropped", "NEW SERIES DROPPED"),
        e.rules,
        e.groups
    );
    for problem in &e.state_problems {
        let _ = writeln!(out, "ALERT STATE: {problem}");
    }
    for (rule, err) in &e.rule_errors {
        let _ = writeln!(out, "rule {rule} failed: {err}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report() -> StatusReport {
        let t = |s: i64| DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap();
        let d = Duration::from_secs(1);
        let mut app = Component::new(
            "app",
            "http",
            "http://127.0.0.1:3000/api/health".into(),
            true,
            d,
            d,
        );
        app.status = ComponentStatus::Ok;
        app.latency_ms = Some(2.14);
        app.last_success = Some(t(-1));
        let mut cache = Component::new(
            "cache",
            "redis",
            "redis://127.0.0.1:6379/0".into(),
            true,
            d,
            d,
        );
        cache.status = ComponentStatus::Down;
        cache.latency_ms = Some(0.4);
        cache.last_success = Some(t(-75));
        cache.consecutive_failures = 3;
        cache.last_error =
            Some("cannot connect to redis://127.0.0.1:6379/0: Connection refused <b>".into());
        let disk = Component::new("disk", "disk", "/".into(), false, d, d);
        StatusReport {
            status: Overall::Down,
            version: "0.1.0".into(),
            environment: "dev".into(),
            started_at: t(-3723),
            uptime_seconds: 3723,
            config_hash: "0123456789ab".into(),
            last_reload: None,
            generated_at: t(0),
            components: vec![app, cache, disk],
            engine: crate::rules::manager::EngineView {
                alerts: vec![AlertView {
                    name: "CacheDown".into(),
                    state: State::Firing,
                    labels: [
                        ("alertname", "CacheDown"),
                        ("probe", "cache"),
                        ("severity", "critical"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                    annotations: [
                        ("summary", "Redis does not answer"),
                        ("runbook_url", "https://x/CacheDown.md"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                    value: 0.0,
                    active_at: t(-75),
                    fired_at: Some(t(-15)),
                }, AlertView {
                    name: "Watchdog".into(),
                    state: State::Firing,
                    labels: [("alertname", "Watchdog"), ("severity", "none")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                    annotations: Default::default(),
                    value: 1.0,
                    active_at: t(-3000),
                    fired_at: Some(t(-3000)),
                }],
                series: 120,
                samples: 4000,
                max_series: 50_000,
                rules: 12,
                groups: 2,
                ..Default::default()
            },
            publishing: Some(crate::publish::PublishView {
                mode: "api".into(),
                namespace: "PlexWatchTogether".into(),
                interval_seconds: 60.0,
                queued: 12,
                datums_sent: 340,
                dropped: 0,
                last_success: Some(t(-20)),
                last_error: Some(crate::publish::PublishError {
                    at: t(-80),
                    message: "dispatch failure: connection refused".into(),
                }),
                ..Default::default()
            }),
            task: Some(crate::ecs::EcsView {
                task: Some(crate::ecs::TaskInfo {
                    task_id: "bfa26362".into(),
                    task_definition: "watch-together:7".into(),
                    cluster: "prod".into(),
                    availability_zone: "us-east-1d".into(),
                    ..Default::default()
                }),
                memory_used_ratio: Some(0.42),
                cpu_used_ratio: Some(0.07),
                ..Default::default()
            }),
            paging: Some(crate::paging::PagingView {
                routing_file: "alerts/routing.yaml".into(),
                lease: Some(crate::notify::lease::LeaseState::Holder),
                muted: [(
                    "dev-DiskSpaceLow-0a1b2c3d".to_string(),
                    crate::route::router::Muted::Window {
                        name: "monthly".into(),
                    },
                )]
                .into(),
                held: [("dev-CacheDown-1a2b3c4d".to_string(), t(45))].into(),
                windows: vec![crate::route::window::WindowView {
                    name: "monthly".into(),
                    active_until: Some(t(3600)),
                    next_start: Some(t(86400 * 28)),
                    matchers: vec!["severity=\"warning\"".into()],
                }],
                active_silences: 0,
                targets: [(
                    "critical/sns".to_string(),
                    crate::notify::TargetStats {
                        depth: 1,
                        oldest: Some(t(-30)),
                        attempts: 4,
                        delivered: 2,
                        failures: 2,
                        dropped: 0,
                        last_error: Some("dispatch failure: connection refused".into()),
                        last_success: Some(t(-600)),
                    },
                )]
                .into(),
                last_run: Some(t(0)),
                dead_letters: 0,
                task: String::new(),
                storage: Default::default(),
            }),
            scrapes: vec![crate::scrape::TargetView {
                job: "app".into(),
                url: "http://127.0.0.1:3000/metrics".into(),
                up: false,
                last_scrape: Some(t(-5)),
                duration_seconds: 0.25,
                samples: 0,
                error: Some("the body exceeds body_size_limit (10485760 bytes)".into()),
                generation: 0,
            }],
            history: Some(crate::api::history::HistorySummary {
                components: vec![crate::api::history::ComponentPast {
                    name: "cache".into(),
                    uptime: crate::api::history::Uptime {
                        h24: Some(0.98),
                        d7: Some(0.997),
                        d30: Some(0.9999),
                        d90: None,
                    },
                    days: Vec::new(),
                    latency_24h: Vec::new(),
                }],
                incidents: std::sync::Arc::new(vec![crate::history::incidents::Incident {
                    alarm: "dev-CacheDown-0123abcd".into(),
                    aliases: Vec::new(),
                    alertname: "CacheDown".into(),
                    severity: "critical".into(),
                    summary: "Redis does not answer".into(),
                    runbook_url: None,
                    fired_at: t(-7200),
                    resolved_at: Some(t(-6900)),
                    pages: vec![crate::history::incidents::Page {
                        at: t(-7199),
                        target: "critical/sns".into(),
                        firing: true,
                        delivered: false,
                        error: Some("throttled".into()),
                    }],
                    more_pages: 0,
                    mutes: vec![crate::history::incidents::Mute {
                        at: t(-7100),
                        released: Some(t(-6900)),
                        why: "silence 9f by alice until 2026-09-21 12:30 UTC: failover".into(),
                        by: Some("alice".into()),
                        until: Some(t(-6000)),
                    }],
                }]),
                pipeline: crate::api::history::PipelineSummary {
                    state: "healthy".into(),
                    text: "alerting pipeline healthy — heartbeat delivered 20s ago (heartbeat/webhook)".into(),
                    alerts: vec!["Watchdog".into()],
                    last_delivered: Some(t(-20)),
                },
                problems: Vec::new(),
                written_at: None,
            }),
            fleet: Some(crate::fleet::FleetView {
                tasks: vec![
                    crate::fleet::FleetTask {
                        task: "bfa26362".into(),
                        this: true,
                        state: crate::fleet::TaskState::Present,
                        last_seen: Some(t(0)),
                        snapshot: None,
                    },
                    crate::fleet::FleetTask {
                        task: "c0ffee00".into(),
                        this: false,
                        state: crate::fleet::TaskState::Missing,
                        last_seen: Some(t(-40)),
                        snapshot: None,
                    },
                ],
                unavailable: None,
                updated_at: Some(t(0)),
            }),
            silences: vec![SilenceSummary {
                id: "9f".into(),
                matchers: vec!["alertname=\"HighLatency\"".into()],
                starts_at: t(-60),
                ends_at: t(1800),
                created_by: "alice".into(),
                comment: "failover <drill>".into(),
            }],
        }
    }

    #[test]
    fn text_table_golden() {
        let expected = "\
vigil 0.1.0 · dev · status DOWN · up 1h2m3s · config 0123456789ab · 2026-09-21T14:13:20Z

COMPONENT            KIND   STATUS   LATENCY  LAST SUCCESS  FAILS  TARGET / LAST ERROR
app                  http   ok        2.1 ms  1s ago            0  http://127.0.0.1:3000/api/health
cache                redis  DOWN      0.4 ms  1m15s ago         3  cannot connect to redis://127.0.0.1:6379/0: Connection refused <b>
disk (non-critical)  disk   unknown        -  never             0  /

alerting pipeline healthy — heartbeat delivered 20s ago (heartbeat/webhook)
  cache: uptime 24h 98.00% · 7d 99.70% · 30d 99.99% · 90d -

ALERTS: 1 firing, 0 pending
  FIRING   CacheDown since 15s ago: Redis does not answer
           probe=cache severity=critical  value 0
           runbook: https://x/CacheDown.md

store: 120 series (max 50000), 4000 samples; 12 rules in 2 groups

INCIDENTS (newest first)
  2026-09-21T12:13:20Z CacheDown for 5m; paged: critical/sns firing NOT DELIVERED; held back: silence 9f by alice until 2026-09-21 12:30 UTC: failover

FLEET
  bfa26362 (this task) unknown, last seen just now
  c0ffee00 MISSING, last seen 40s ago

PAGING
  lease: held by this sidecar: it pages for shared alerts
  MAINTENANCE WINDOW monthly active until 2026-09-21T15:13:20Z (1h), muting severity=\"warning\"
  held back: dev-DiskSpaceLow-0a1b2c3d (maintenance window monthly)
  page held by its group's timers: dev-CacheDown-1a2b3c4d, goes out 2026-09-21T14:14:05Z
  critical/sns: 1 queued, 2 delivered, 2 failed attempts, oldest queued 30s ago; last error: dispatch failure: connection refused

SCRAPES
  scrape app (http://127.0.0.1:3000/metrics): DOWN 5s ago: the body exceeds body_size_limit (10485760 bytes)

PUBLISHING
  cloudwatch (api) PlexWatchTogether every 60s: last publish 20s ago, 12 queued, 340 sent, 0 dropped
  last error 1m20s ago: dispatch failure: connection refused
  task bfa26362 (watch-together:7) in cluster prod, us-east-1d: memory 42 %, CPU 7 %
";
        assert_eq!(render_text(&report()), expected);
    }

    #[test]
    fn html_escapes_and_refreshes_without_javascript() {
        let html = crate::api::page::render(&report());
        assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
        assert!(html.contains("failover &lt;drill&gt;"));
        assert!(html.contains(r#"data-task="c0ffee00" data-state="missing""#));
        assert!(
            html.contains(r#"<tr class="incident" data-alert="CacheDown" data-state="resolved">"#)
        );
        assert!(html.contains("critical/sns firing 12:13:21 ✗ NOT delivered: throttled"));
        assert!(html.contains(r#"id="pipeline" data-state="healthy""#));
        // The Watchdog is the pipeline's line, not a red alert.
        assert!(!html.contains(r#"data-alert="Watchdog""#));
        assert!(html.contains("Connection refused &lt;b&gt;"));
        assert!(!html.contains("<script"));
        assert!(html.contains("<title>DOWN · vigil · dev</title>"));
    }

    #[test]
    fn json_round_trips() {
        let r = report();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["status"], "down");
        assert_eq!(v["components"][1]["status"], "down");
        assert_eq!(v["components"][2]["status"], "unknown");
    }
}
