//! The HTML page on-call opens first: the verdict, then per component its status,
//! latency, 90 daily squares, uptime and a 24-hour latency chart (inline SVG); the
//! alerts that need a human; the incident timeline; what mutes what; the fleet;
//! paging, the lease and the last reload. No JavaScript: it refreshes itself every
//! [`REFRESH_SECONDS`]. Every colour has its word beside it or in its label, tables
//! have headers, and it reads on a phone.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::history::{ComponentPast, Day, LatencyPoint};
use super::status::{
    StatusReport, ago, paging_lines, publishing_lines, scrape_lines, store_summary,
};
use crate::fleet::TaskState;
use crate::health::{Component, ComponentStatus, Overall};
use crate::rules::alerting::State;

/// Incidents the page lists at most: the newest, resolved within the last
/// [`PAGE_INCIDENT_DAYS`] days or still firing.
pub const PAGE_INCIDENTS: usize = 20;

/// See [`PAGE_INCIDENTS`].
pub const PAGE_INCIDENT_DAYS: i64 = 14;

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 10;

/// Green, amber, red, grey: each with white text at 4.5:1 or more.
const OK: &str = "#1a7f37";
const WARN: &str = "#9a6700";
const BAD: &str = "#cf222e";
const NONE: &str = "#6e7781";

/// `s` with `& < > " '` escaped for HTML text and attributes.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A runbook link: only `http(s)://` becomes a link (an annotation is templated
/// from labels, and `javascript:` in an `href` runs on a click); anything else is
/// shown as text.
fn runbook_link(url: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!(r#" <a href="{}">runbook</a>"#, escape(url))
    } else {
        format!(" runbook: {}", escape(url))
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    crate::settings::duration::format(std::time::Duration::from_secs(
        (to - from).num_seconds().max(0) as u64,
    ))
}

/// The verdict as a sentence: what is wrong now.
pub fn verdict(r: &StatusReport) -> (String, &'static str) {
    let down: Vec<&str> = r
        .components
        .iter()
        .filter(|c| c.status == ComponentStatus::Down)
        .map(|c| c.name.as_str())
        .collect();
    let firing: Vec<&str> = r
        .engine
        .alerts
        .iter()
        .filter(|a| a.state == State::Firing && !pipeline_alert(a))
        .map(|a| a.name.as_str())
        .collect();
    let mut text = match r.status {
        Overall::Down => format!("DOWN: {} not answering", down.join(", ")),
        Overall::Degraded if !down.is_empty() => {
            format!("DEGRADED: {} not answering", down.join(", "))
        }
        Overall::Degraded => "DEGRADED: not every component checked yet".to_string(),
        Overall::Ok => "All systems operational".to_string(),
    };
    if !firing.is_empty() {
        let _ = write!(
            text,
            " · {} alert(s) firing: {}",
            firing.len(),
            firing.join(", ")
        );
    }
    let colour = match (r.status, firing.is_empty()) {
        (Overall::Down, _) => BAD,
        (Overall::Ok, true) => OK,
        _ if r.engine.alerts.iter().any(|a| {
            a.state == State::Firing
                && a.labels.get("severity").map(String::as_str) == Some("critical")
        }) =>
        {
            BAD
        }
        _ => WARN,
    };
    (text, colour)
}

fn pipeline_alert(a: &crate::rules::manager::AlertView) -> bool {
    a.labels.get("severity").map(String::as_str) == Some(crate::history::PIPELINE_SEVERITY)
}

fn status_word(s: ComponentStatus) -> (&'static str, &'static str) {
    match s {
        ComponentStatus::Unknown => ("unknown", NONE),
        ComponentStatus::Ok => ("ok", OK),
        ComponentStatus::Down => ("DOWN", BAD),
    }
}

fn pct(u: Option<f64>) -> String {
    match u {
        Some(u) => super::history::uptime_text(u),
        None => "no data".into(),
    }
}

/// The 90 daily squares as an SVG, each with its date and downtime as a title.
fn bars(days: &[Day], down_now: bool) -> String {
    let mut out = String::with_capacity(days.len() * 160);
    let n = days.len();
    let _ = write!(
        out,
        r#"<svg class="bars" viewBox="0 0 {w} 34" preserveAspectRatio="none" role="img" aria-label="daily downtime over the last {n} days"><title>daily downtime, oldest left, today right</title>"#,
        w = n * 5
    );
    for (i, d) in days.iter().enumerate() {
        let today = i + 1 == n;
        let grade = d.grade(today && down_now);
        let colour = match grade {
            "ok" => OK,
            "blip" => WARN,
            "outage" => BAD,
            _ => "#d0d7de",
        };
        let label = match grade {
            "none" => format!("{}: no data", d.date),
            _ => format!(
                "{}: {} down, {} checks, {} failed{}",
                d.date,
                minutes_text(d.down_minutes),
                d.checks,
                d.failures,
                if today && down_now { ", down now" } else { "" }
            ),
        };
        let _ = write!(
            out,
            r#"<rect x="{x}" width="4" height="34" rx="1" fill="{colour}" data-date="{date}" data-grade="{grade}"{today}><title>{label}</title></rect>"#,
            x = i * 5,
            date = d.date,
            today = if today { r#" class="today""# } else { "" },
            label = escape(&label)
        );
    }
    out.push_str("</svg>");
    out
}

fn minutes_text(m: f64) -> String {
    if m == 0.0 {
        "nothing".into()
    } else if m < 1.0 {
        format!("{:.0} s", (m * 60.0).ceil())
    } else {
        format!("{m:.0} min")
    }
}

/// The 24-hour latency chart: p95 as a line, p50 below it, red where it was down.
fn chart(points: &[LatencyPoint], now: DateTime<Utc>) -> String {
    const W: f64 = 288.0;
    const H: f64 = 60.0;
    let start = now.timestamp() as f64 - 86_400.0;
    let x = |t: DateTime<Utc>| ((t.timestamp() as f64 - start) / 300.0).clamp(0.0, W);
    let top = points
        .iter()
        .map(|p| p.p95)
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max)
        .max(1.0) as f64;
    let y = |v: f32| H - (f64::from(v) / top * (H - 4.0)).clamp(0.0, H);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {h}" preserveAspectRatio="none" role="img" aria-label="latency over the last 24 hours, highest {top:.1} ms"><title>latency, last 24 hours (p95 dark, p50 light; red where down)</title>"#,
        h = H + 12.0
    );
    for p in points.iter().filter(|p| p.down) {
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="0" width="1" height="{H}" fill="{BAD}" opacity=".5"/>"#,
            x(p.at)
        );
    }
    for (field, colour, width) in [(1usize, "#54aeff", 1.0), (2, "#0550ae", 1.5)] {
        let mut path = String::new();
        let mut pen_up = true;
        let mut last_x = -10.0;
        for p in points {
            let v = if field == 1 { p.p50 } else { p.p95 };
            if !v.is_finite() {
                pen_up = true;
                continue;
            }
            let px = x(p.at);
            // A gap of more than two steps: no data, not a straight line across.
            if px - last_x > 2.5 {
                pen_up = true;
            }
            // A lone point is a dot: a zero-length segment with round caps.
            let (px_s, py_s) = (format!("{px:.1}"), format!("{:.1}", y(v)));
            if pen_up {
                let _ = write!(path, " M{px_s},{py_s} l0,0");
            } else {
                let _ = write!(path, " L{px_s},{py_s}");
            }
            pen_up = false;
            last_x = px;
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-linecap="round" stroke-linejoin="round" vector-effect="non-scaling-stroke"/>"#,
                path.trim_start()
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="1" y="{ly}" font-size="8" fill="#59636e">24 h ago</text><text x="{W}" y="{ly}" font-size="8" fill="#59636e" text-anchor="end">now · top {top:.1} ms</text></svg>"##,
        ly = H + 10.0
    );
    out
}

fn component(out: &mut String, c: &Component, past: Option<&ComponentPast>, now: DateTime<Utc>) {
    let (word, colour) = status_word(c.status);
    let latency = c
        .latency_ms
        .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
    let _ = write!(
        out,
        r#"<article class="component" data-component="{name}" data-status="{status}">
<h3>{name} <span class="badge" style="background:{colour}">{word}</span> <small>{kind}{crit}</small></h3>
<p>latency now <b>{latency}</b> · last success {last} · {fails} failure(s) in a row"#,
        name = escape(&c.name),
        status = word.to_lowercase(),
        kind = escape(&c.kind),
        crit = if c.critical { ", critical" } else { "" },
        last = ago(c.last_success, now),
        fails = c.consecutive_failures,
    );
    if let (ComponentStatus::Down, Some(e)) = (c.status, &c.last_error) {
        let _ = write!(out, r#"<br><span class="err">{}</span>"#, escape(e));
    }
    out.push_str("</p>\n");
    if let Some(p) = past {
        out.push_str(&bars(&p.days, c.status == ComponentStatus::Down));
        let _ = writeln!(
            out,
            r#"<p class="uptime">uptime: 24 h <b>{}</b> · 7 d <b>{}</b> · 30 d <b>{}</b> · 90 d <b>{}</b></p>"#,
            pct(p.uptime.h24),
            pct(p.uptime.d7),
            pct(p.uptime.d30),
            pct(p.uptime.d90)
        );
        if p.latency_24h.is_empty() {
            out.push_str("<p><small>no latency recorded in the last 24 hours yet (a minute is recorded once it ends)</small></p>\n");
        } else {
            out.push_str(&chart(&p.latency_24h, now));
        }
    }
    out.push_str("</article>\n");
}

/// The page.
pub fn render(r: &StatusReport) -> String {
    let now = r.generated_at;
    let mut out = String::with_capacity(64 * 1024);
    let (verdict, vcolour) = verdict(r);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{title} · vigil · {env}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:60rem;color:#1f2328}}
h1{{font-size:1.25rem;margin:0 0 .4rem}} h2{{font-size:1.1rem;margin:1.4rem 0 .4rem}} h3{{font-size:1rem;margin:0 0 .2rem}}
.verdict{{color:#fff;border-radius:6px;padding:.6rem .8rem;font-weight:600;font-size:1.1rem;margin:.3rem 0}}
.badge{{color:#fff;border-radius:4px;padding:.05rem .45rem;font-weight:600;font-size:.85rem}}
.component{{border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;margin:.6rem 0}}
.component p{{margin:.2rem 0}}
svg.bars{{width:100%;height:34px;display:block;margin:.4rem 0 .1rem}}
svg.chart{{width:100%;height:80px;display:block}}
table{{border-collapse:collapse;width:100%}} .scroll{{overflow-x:auto}}
th,td{{text-align:left;padding:.3rem .45rem;border-bottom:1px solid #d0d7de;vertical-align:top}}
.err{{color:{BAD};word-break:break-word}}
.pipeline{{padding:.3rem .6rem;border-left:4px solid;margin:.3rem 0}}
small{{color:#59636e}}
@media (max-width:600px){{.wide{{display:none}} body{{padding:.5rem}}}}
</style></head><body>
<h1>Vigil · {env}</h1>
<p class="verdict" id="verdict" style="background:{vcolour}">{verdict}</p>
"#,
        title = escape(verdict.split(':').next().unwrap_or("")),
        env = escape(&r.environment),
        verdict = escape(&verdict),
    );
    if let Some(h) = &r.history {
        let colour = match h.pipeline.state.as_str() {
            "healthy" => OK,
            "failing" => BAD,
            _ => WARN,
        };
        let mark = match h.pipeline.state.as_str() {
            "healthy" => "✓",
            "failing" => "✗",
            _ => "!",
        };
        let _ = writeln!(
            out,
            r#"<p class="pipeline" id="pipeline" data-state="{}" style="border-color:{colour}">{mark} {}</p>"#,
            h.pipeline.state,
            escape(&h.pipeline.text)
        );
    }
    let _ = writeln!(
        out,
        "<p><small>task {task} · version {ver} · up {up} · config {hash} · {gen} · refreshes every {REFRESH_SECONDS} s</small></p>",
        task = escape(
            &r.fleet
                .as_ref()
                .and_then(|f| f.tasks.iter().find(|t| t.this))
                .map(|t| t.task.clone())
                .unwrap_or_default()
        ),
        ver = escape(&r.version),
        up = crate::settings::duration::format(std::time::Duration::from_secs(r.uptime_seconds.max(1))),
        hash = escape(&r.config_hash),
        gen = when(now),
    );
    if let Some(reload) = &r.last_reload {
        if reload.ok && !reload.restart_needed.is_empty() {
            let _ = writeln!(
                out,
                r#"<p class="err">Reloaded at {}, but <b>{}</b> take effect only at the next restart: the daemon runs with those it started with.</p>"#,
                when(reload.at),
                escape(&reload.restart_needed.join(", "))
            );
        } else if reload.ok {
            let _ = writeln!(
                out,
                "<p><small>last reload {}: ok</small></p>",
                when(reload.at)
            );
        } else {
            let _ = writeln!(
                out,
                r#"<p class="err"><b>RELOAD FAILED</b> at {}; the previous configuration keeps running: {}</p>"#,
                when(reload.at),
                escape(reload.error.as_deref().unwrap_or(""))
            );
        }
    }
    for p in r.history.iter().flat_map(|h| h.problems.iter()) {
        let _ = writeln!(out, r#"<p class="err">History: {}</p>"#, escape(p));
    }

    out.push_str("<h2>Components</h2>\n");
    for c in &r.components {
        let past = r
            .history
            .as_ref()
            .and_then(|h| h.components.iter().find(|p| p.name == c.name));
        component(&mut out, c, past, now);
    }

    alerts(&mut out, r);
    incidents(&mut out, r);
    muting(&mut out, r);
    fleet(&mut out, r);

    out.push_str("<h2>Paging</h2>\n<ul>\n");
    for l in paging_lines(r) {
        let _ = writeln!(out, "<li>{}</li>", escape(&l));
    }
    out.push_str("</ul>\n");
    for (title, lines) in [
        ("Scrapes", scrape_lines(r)),
        ("Publishing", publishing_lines(r)),
    ] {
        if !lines.is_empty() {
            let _ = writeln!(out, "<h2>{title}</h2>\n<ul>");
            for l in lines {
                let _ = writeln!(out, "<li>{}</li>", escape(&l));
            }
            out.push_str("</ul>\n");
        }
    }
    let e = &r.engine;
    let _ = writeln!(
        out,
        "<p><small>store: {}</small></p>",
        escape(&store_summary(e))
    );
    for problem in &e.state_problems {
        let _ = writeln!(
            out,
            r#"<p class="err"><b>Alert state: {}</b></p>"#,
            escape(problem)
        );
    }
    if !e.rule_errors.is_empty() {
        out.push_str("<h2>Rules that failed</h2>\n<ul>\n");
        for (rule, err) in &e.rule_errors {
            let _ = writeln!(out, "<li><b>{}</b>: {}</li>", escape(rule), escape(err));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn alerts(out: &mut String, r: &StatusReport) {
    let shown: Vec<_> = r
        .engine
        .alerts
        .iter()
        .filter(|a| !pipeline_alert(a))
        .collect();
    out.push_str(r#"<h2 id="alerts">Alerts</h2>"#);
    if shown.is_empty() {
        out.push_str("\n<p>No alerts firing or pending.</p>\n");
        return;
    }
    out.push_str("\n<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Alert</th><th scope=\"col\">State</th><th scope=\"col\">Since</th><th scope=\"col\">Summary</th></tr></thead><tbody>\n");
    for a in shown {
        let (word, colour) = match a.state {
            State::Firing => ("FIRING", BAD),
            State::Pending => ("pending", WARN),
            State::Inactive => ("resolved", NONE),
        };
        let since = ago(Some(a.fired_at.unwrap_or(a.active_at)), r.generated_at);
        let link = a
            .annotations
            .get("runbook_url")
            .map(|u| runbook_link(u))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<tr class="alert" data-alert="{name}"><td><b>{name}</b></td><td><span class="badge" style="background:{colour}">{word}</span></td><td>{since}</td><td>{summary}{link}</td></tr>"#,
            name = escape(&a.name),
            summary = escape(
                a.annotations
                    .get("summary")
                    .map(String::as_str)
                    .unwrap_or("")
            ),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn incidents(out: &mut String, r: &StatusReport) {
    let now = r.generated_at;
    out.push_str(r#"<h2 id="incidents">Incidents</h2>"#);
    let Some(h) = r.history.as_ref().filter(|h| !h.incidents.is_empty()) else {
        out.push_str("\n<p>No incidents in the last 90 days.</p>\n");
        return;
    };
    out.push_str("\n<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Alert</th><th scope=\"col\">Fired</th><th scope=\"col\">For</th><th scope=\"col\">Paged</th><th scope=\"col\" class=\"wide\">Held back</th></tr></thead><tbody>\n");
    // The page shows the recent ones; the JSON document carries more.
    let recent = h
        .incidents
        .iter()
        .filter(|i| {
            i.resolved_at
                .is_none_or(|t| now - t < chrono::Duration::days(PAGE_INCIDENT_DAYS))
        })
        .take(PAGE_INCIDENTS)
        .collect::<Vec<_>>();
    let shown = recent.len();
    for i in recent {
        let (state, duration) = match i.resolved_at {
            Some(t) => (
                "resolved",
                format!("{} (resolved {})", span(i.fired_at, t), when(t)),
            ),
            None => (
                "firing",
                format!("{} so far, <b>still firing</b>", span(i.fired_at, now)),
            ),
        };
        let pages: Vec<String> = i
            .pages
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}{}",
                    escape(&p.target),
                    if p.firing { "firing" } else { "resolved" },
                    p.at.format("%H:%M:%S"),
                    match (&p.delivered, &p.error) {
                        (true, _) => " ✓ delivered".to_string(),
                        (false, e) =>
                            format!(" ✗ NOT delivered: {}", escape(e.as_deref().unwrap_or(""))),
                    }
                )
            })
            .collect();
        let mut pages = if pages.is_empty() {
            "nobody".to_string()
        } else {
            pages.join("<br>")
        };
        if i.more_pages > 0 {
            let _ = write!(pages, "<br>and {} more", i.more_pages);
        }
        let mutes: Vec<String> = i
            .mutes
            .iter()
            .map(|m| {
                format!(
                    "{} from {}{}",
                    escape(&m.why),
                    m.at.format("%H:%M:%S"),
                    m.released
                        .map(|t| format!(" to {}", t.format("%H:%M:%S")))
                        .unwrap_or_default()
                )
            })
            .collect();
        let link = i
            .runbook_url
            .as_ref()
            .map(|u| runbook_link(u))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<tr class="incident" data-alert="{name}" data-state="{state}"><td><b>{name}</b> <small>{sev}</small><br>{summary}{link}</td><td>{fired}</td><td>{duration}</td><td>{pages}</td><td class="wide">{mutes}</td></tr>"#,
            name = escape(&i.alertname),
            sev = escape(&i.severity),
            summary = escape(&i.summary),
            fired = when(i.fired_at),
            mutes = if mutes.is_empty() {
                "-".to_string()
            } else {
                mutes.join("<br>")
            },
        );
    }
    out.push_str("</tbody></table></div>\n");
    if shown < h.incidents.len() {
        let _ = writeln!(
            out,
            "<p><small>{shown} shown: those still firing or resolved in the last {PAGE_INCIDENT_DAYS} days, {PAGE_INCIDENTS} at most. <code>/status</code> as JSON lists the newest {}; <code>state_dir/history/incidents/</code> keeps 90 days.</small></p>",
            h.incidents.len()
        );
    }
}

fn muting(out: &mut String, r: &StatusReport) {
    let now = r.generated_at;
    let windows: Vec<_> = r
        .paging
        .iter()
        .flat_map(|p| p.windows.iter())
        .filter_map(|w| Some((w, w.active_until?)))
        .collect();
    out.push_str(r#"<h2 id="muting">Silences and maintenance</h2>"#);
    if r.silences.is_empty() && windows.is_empty() {
        out.push_str("\n<p>Nothing is muted.</p>\n");
        return;
    }
    out.push_str("\n<div class=\"scroll\"><table><thead><tr><th scope=\"col\">What</th><th scope=\"col\">Mutes</th><th scope=\"col\">Until</th><th scope=\"col\">Set by</th></tr></thead><tbody>\n");
    for s in &r.silences {
        let pending = s.starts_at > now;
        let _ = writeln!(
            out,
            r#"<tr class="silence"><td>silence {id}{pending}</td><td><code>{m}</code></td><td>{until} ({left} left)</td><td>{by}: {comment}</td></tr>"#,
            id = escape(&s.id),
            pending = if pending {
                format!(" (starts {})", when(s.starts_at))
            } else {
                String::new()
            },
            m = escape(&s.matchers.join(", ")),
            until = when(s.ends_at),
            left = span(now, s.ends_at),
            by = escape(&s.created_by),
            comment = escape(&s.comment),
        );
    }
    for (w, until) in windows {
        let _ = writeln!(
            out,
            r#"<tr class="window"><td>maintenance window {name}</td><td><code>{m}</code></td><td>{until} ({left} left)</td><td>the routing file</td></tr>"#,
            name = escape(&w.name),
            m = escape(&if w.matchers.is_empty() {
                "everything".to_string()
            } else {
                w.matchers.join(", ")
            }),
            until = when(until),
            left = span(now, until),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn fleet(out: &mut String, r: &StatusReport) {
    let Some(f) = &r.fleet else { return };
    let now = r.generated_at;
    out.push_str(r#"<h2 id="fleet">Fleet</h2>"#);
    out.push('\n');
    if let Some(why) = &f.unavailable {
        let _ = writeln!(out, "<p><small>{}</small></p>", escape(why));
    }
    out.push_str("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Task</th><th scope=\"col\">Zone</th><th scope=\"col\">Status</th><th scope=\"col\">Firing</th><th scope=\"col\" class=\"wide\">Lease</th><th scope=\"col\">Last seen</th></tr></thead><tbody>\n");
    for t in &f.tasks {
        let (word, colour) = match (t.state, t.snapshot.as_ref().map(|s| s.status)) {
            (TaskState::Missing, _) => ("MISSING".to_string(), BAD),
            (TaskState::Unreadable, _) => ("unreadable".to_string(), WARN),
            (_, Some(Overall::Ok)) => ("ok".to_string(), OK),
            (_, Some(Overall::Degraded)) => ("DEGRADED".to_string(), WARN),
            (_, Some(Overall::Down)) => ("DOWN".to_string(), BAD),
            (_, None) => ("unknown".to_string(), NONE),
        };
        let down: Vec<&str> = t
            .snapshot
            .iter()
            .flat_map(|s| s.components.iter())
            .filter(|(_, s)| *s == ComponentStatus::Down)
            .map(|(n, _)| n.as_str())
            .collect();
        let status = if down.is_empty() {
            word.clone()
        } else {
            format!("{word}: {} down", down.join(", "))
        };
        let lease = match t.snapshot.as_ref().and_then(|s| s.lease) {
            Some(crate::notify::lease::LeaseState::Holder) => "holds the paging lease",
            Some(crate::notify::lease::LeaseState::Standby) => "standby",
            Some(crate::notify::lease::LeaseState::Unavailable) => "Redis unreachable",
            _ => "-",
        };
        let _ = writeln!(
            out,
            r#"<tr class="task" data-task="{task}" data-state="{state}"><td><b>{task}</b>{this}</td><td>{zone}</td><td><span class="badge" style="background:{colour}">{status}</span></td><td>{firing}</td><td class="wide">{lease}</td><td>{seen}</td></tr>"#,
            task = escape(&t.task),
            state = match t.state {
                TaskState::Present => "present",
                TaskState::Missing => "missing",
                TaskState::Unreadable => "unreadable",
            },
            this = if t.this {
                " <small>(this task)</small>"
            } else {
                ""
            },
            zone = escape(
                t.snapshot
                    .as_ref()
                    .map_or("?", |s| s.availability_zone.as_str())
            ),
            status = escape(&status),
            firing = escape(
                &t.snapshot
                    .as_ref()
                    .map(|s| s.firing.join(", "))
                    .unwrap_or_default()
            ),
            seen = ago(t.last_seen, now),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_web_address_becomes_a_runbook_link() {
        assert_eq!(
            runbook_link("https://x/a?b=1&c=2"),
            r#" <a href="https://x/a?b=1&amp;c=2">runbook</a>"#
        );
        assert_eq!(
            runbook_link("javascript:alert(1)"),
            " runbook: javascript:alert(1)"
        );
        assert!(!runbook_link(" JavaScript:x").contains("href"));
    }
}
