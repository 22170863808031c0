//! A Statuspage-shaped summary for status aggregators and dashboards that read
//! Atlassian Statuspage's public API: `GET /api/v2/summary.json` and
//! `GET /api/v2/status.json`, with the fields they read (see docs/status.md).
//!
//! The indicator: `critical` when a critical component is down; `major` when a
//! `severity="critical"` alert fires; `minor` when a non-critical component is down
//! or not yet checked, or a warning fires; else `none`. The pipeline's own
//! heartbeat (`severity="none"`) never counts.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ApiState;
use super::status::StatusReport;
use crate::health::{ComponentStatus, Overall};
use crate::rules::alerting::State as AlertState;

/// The page.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The environment.
    pub id: String,
    /// "Vigil · <environment>".
    pub name: String,
    /// `/status`, when Vigil's external URL is known.
    pub url: String,
    /// Always UTC.
    pub time_zone: &'static str,
    /// When this was made.
    pub updated_at: DateTime<Utc>,
}

/// The overall indicator.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `none`, `minor`, `major` or `critical`.
    pub indicator: &'static str,
    /// A sentence.
    pub description: String,
}

/// A component.
#[derive(Debug, Serialize)]
pub struct SpComponent {
    /// Its name (names are unique).
    pub id: String,
    /// Its name.
    pub name: String,
    /// `operational`, `degraded_performance`, `partial_outage`, `major_outage`.
    pub status: &'static str,
    /// Its place in the config.
    pub position: usize,
    /// Its kind, and whether it is critical.
    pub description: String,
    /// Its last check.
    pub updated_at: Option<DateTime<Utc>>,
}

/// An unresolved incident: a firing alert.
#[derive(Debug, Serialize)]
pub struct SpIncident {
    /// The alarm name, as pages carry it.
    pub id: String,
    /// The summary.
    pub name: String,
    /// Always `investigating` while it fires.
    pub status: &'static str,
    /// `critical`, `major` (warning) or `minor`.
    pub impact: &'static str,
    /// When it started firing.
    pub started_at: DateTime<Utc>,
    /// The same.
    pub created_at: DateTime<Utc>,
    /// Its runbook.
    pub shortlink: Option<String>,
}

/// A maintenance window under way.
#[derive(Debug, Serialize)]
pub struct SpMaintenance {
    /// The window's name.
    pub id: String,
    /// The same.
    pub name: String,
    /// `in_progress`.
    pub status: &'static str,
    /// Until when.
    pub scheduled_until: DateTime<Utc>,
}

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The page.
    pub page: Page,
    /// The components.
    pub components: Vec<SpComponent>,
    /// Firing alerts.
    pub incidents: Vec<SpIncident>,
    /// Maintenance windows under way.
    pub scheduled_maintenances: Vec<SpMaintenance>,
    /// The indicator.
    pub status: Status,
}

/// The indicator and its sentence.
pub fn indicator(r: &StatusReport) -> Status {
    let firing = |sev: &str| {
        r.engine
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .filter(|a| a.labels.get("severity").map(String::as_str) == Some(sev))
            .count()
    };
    let down: Vec<&str> = r
        .components
        .iter()
        .filter(|c| c.status == ComponentStatus::Down)
        .map(|c| c.name.as_str())
        .collect();
    let (indicator, description) = match r.status {
        Overall::Down => (
            "critical",
            format!("Major outage: {} down", down.join(", ")),
        ),
        _ if firing("critical") > 0 => (
            "major",
            format!("{} critical alert(s) firing", firing("critical")),
        ),
        Overall::Degraded if !down.is_empty() => {
            ("minor", format!("Partial outage: {} down", down.join(", ")))
        }
        Overall::Degraded => ("minor", "Not every component checked yet".to_string()),
        _ if firing("warning") > 0 => ("minor", format!("{} warning(s) firing", firing("warning"))),
        _ => ("none", "All Systems Operational".to_string()),
    };
    Status {
        indicator,
        description,
    }
}

/// The summary of a report.
pub fn summary(r: &StatusReport, external_url: &str) -> Summary {
    let url = if external_url.is_empty() {
        String::new()
    } else {
        format!("{}/status", external_url.trim_end_matches('/'))
    };
    Summary {
        page: Page {
            id: r.environment.clone(),
            name: format!("Vigil · {}", r.environment),
            url,
            time_zone: "Etc/UTC",
            updated_at: r.generated_at,
        },
        components: r
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| SpComponent {
                id: c.name.clone(),
                name: c.name.clone(),
                status: match (c.status, c.critical) {
                    (ComponentStatus::Ok, _) => "operational",
                    (ComponentStatus::Unknown, _) => "degraded_performance",
                    (ComponentStatus::Down, true) => "major_outage",
                    (ComponentStatus::Down, false) => "partial_outage",
                },
                position: i + 1,
                description: format!("{}{}", c.kind, if c.critical { ", critical" } else { "" }),
                updated_at: c.last_check,
            })
            .collect(),
        incidents: r
            .engine
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .filter(|a| {
                a.labels.get("severity").map(String::as_str)
                    != Some(crate::history::PIPELINE_SEVERITY)
            })
            .map(|a| {
                let at = a.fired_at.unwrap_or(a.active_at);
                SpIncident {
                    id: crate::route::router::alarm_name(&r.environment, &a.labels),
                    name: a
                        .annotations
                        .get("summary")
                        .cloned()
                        .unwrap_or_else(|| a.name.clone()),
                    status: "investigating",
                    impact: match a.labels.get("severity").map(String::as_str) {
                        Some("critical") => "critical",
                        Some("warning") => "major",
                        _ => "minor",
                    },
                    started_at: at,
                    created_at: at,
                    shortlink: a.annotations.get("runbook_url").cloned(),
                }
            })
            .collect(),
        scheduled_maintenances: r
            .paging
            .iter()
            .flat_map(|p| p.windows.iter())
            .filter_map(|w| {
                Some(SpMaintenance {
                    id: w.name.clone(),
                    name: w.name.clone(),
                    status: "in_progress",
                    scheduled_until: w.active_until?,
                })
            })
            .collect(),
        status: indicator(r),
    }
}

/// `GET /api/v2/summary.json`.
pub async fn summary_json(State(state): State<ApiState>) -> Response {
    let r = super::report(&state, Utc::now());
    Json(summary(&r, &state.external_url)).into_response()
}

/// `GET /api/v2/status.json`: the page and the indicator.
pub async fn status_json(State(state): State<ApiState>) -> Response {
    let r = super::report(&state, Utc::now());
    let s = summary(&r, &state.external_url);
    Json(serde_json::json!({ "page": s.page, "status": s.status })).into_response()
}
