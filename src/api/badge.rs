//! Shields-style badges (`image/svg+xml`), safe to embed anywhere: they carry a
//! component's name and a word or a figure, never a target, a URL or an error.
//!
//! - `GET /badge/{component}/status.svg`: up, down or unknown.
//! - `GET /badge/{component}/uptime/{24h|7d|30d|90d}.svg`: the uptime, as a percentage.
//! - `GET /badge/{component}/latency.svg`: the last check's latency.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::{ApiState, error};
use crate::health::ComponentStatus;

/// Shields' colours.
const GREEN: &str = "#4c1";
const YELLOWGREEN: &str = "#a4a61d";
const YELLOW: &str = "#dfb317";
const ORANGE: &str = "#fe7d37";
const RED: &str = "#e05d44";
const GREY: &str = "#9f9f9f";

/// The width of `s` in Verdana 11 px, as shields measures it (per-character widths
/// of the common characters; others take a wide letter's).
fn text_width(s: &str) -> f64 {
    s.chars()
        .map(|c| match c {
            ' ' => 3.9,
            '.' | ',' | ':' | ';' | '!' | '|' | 'i' | 'l' | 'I' | '\'' => 3.8,
            'f' | 'j' | 'r' | 't' | '(' | ')' | '[' | ']' | '-' | '/' => 4.6,
            'm' | 'w' => 10.7,
            'M' | 'W' => 12.0,
            '%' => 11.8,
            '_' => 7.0,
            '0'..='9' => 7.0,
            'a'..='z' => 6.8,
            'A'..='Z' => 7.6,
            _ => 8.0,
        })
        .sum()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A flat badge: `label` on grey, `message` on `colour`.
pub fn render(label: &str, message: &str, colour: &str) -> String {
    let lw = (text_width(label) + 10.0).round();
    let mw = (text_width(message) + 10.0).round();
    let w = lw + mw;
    let (l, m) = (xml_escape(label), xml_escape(message));
    let lx = lw * 5.0;
    let mx = (lw + mw / 2.0) * 10.0;
    let ltl = (lw - 10.0) * 10.0;
    let mtl = (mw - 10.0) * 10.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{l}: {m}"><title>{l}: {m}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{colour}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{l}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{l}</text><text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{mtl}">{m}</text><text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{mtl}">{m}</text></g></svg>"##
    )
}

/// The colour of an uptime.
pub fn uptime_colour(u: f64) -> &'static str {
    match u {
        u if u >= 0.999 => GREEN,
        u if u >= 0.99 => YELLOWGREEN,
        u if u >= 0.97 => YELLOW,
        u if u >= 0.95 => ORANGE,
        _ => RED,
    }
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response()
}

fn unknown_component(state: &ApiState, name: &str) -> Response {
    let names: Vec<String> = state
        .health
        .borrow()
        .components
        .iter()
        .map(|c| c.name.clone())
        .collect();
    error(
        StatusCode::NOT_FOUND,
        "unknown_component",
        format!(
            "no component is named {name:?}; components are: {}",
            names.join(", ")
        ),
    )
}

/// `GET /badge/{component}/status.svg`.
pub async fn status(
    State(state): State<ApiState>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    let health = state.health.borrow().clone();
    let Some(c) = health.components.iter().find(|c| c.name == name) else {
        return unknown_component(&state, &name);
    };
    match file.as_str() {
        "status.svg" => {
            let (word, colour) = match c.status {
                ComponentStatus::Ok => ("up", GREEN),
                ComponentStatus::Down => ("down", RED),
                ComponentStatus::Unknown => ("unknown", GREY),
            };
            svg(render(&c.name, word, colour))
        }
        "latency.svg" => {
            let (text, colour) = match (c.status, c.latency_ms) {
                (ComponentStatus::Down, _) => ("down".to_string(), RED),
                (_, None) => ("unknown".to_string(), GREY),
                (_, Some(ms)) => {
                    // Against the check's timeout: a tenth is fine, half is close.
                    let timeout_ms = c.timeout_seconds * 1000.0;
                    let colour = if ms <= timeout_ms / 10.0 {
                        GREEN
                    } else if ms <= timeout_ms / 2.0 {
                        YELLOW
                    } else {
                        ORANGE
                    };
                    let text = if ms < 10.0 {
                        format!("{ms:.1} ms")
                    } else {
                        format!("{ms:.0} ms")
                    };
                    (text, colour)
                }
            };
            svg(render(&format!("{} latency", c.name), &text, colour))
        }
        other => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no badge {other:?}: try /badge/{name}/status.svg, /badge/{name}/latency.svg or /badge/{name}/uptime/30d.svg"
            ),
        ),
    }
}

/// `GET /badge/{component}/uptime/{window}.svg`.
pub async fn uptime(
    State(state): State<ApiState>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    if !state
        .health
        .borrow()
        .components
        .iter()
        .any(|c| c.name == name)
    {
        return unknown_component(&state, &name);
    }
    let window = file.strip_suffix(".svg").unwrap_or("");
    let history = state.history.borrow().clone();
    let past = super::history::component_past(&name, &history, Utc::now());
    let Some(u) = past.uptime.get(window) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no uptime window {file:?}: use 24h.svg, 7d.svg, 30d.svg or 90d.svg"),
        );
    };
    let label = format!("{name} uptime {window}");
    match u {
        Some(u) => svg(render(
            &label,
            &super::history::uptime_text(u),
            uptime_colour(u),
        )),
        None => svg(render(&label, "no data", GREY)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_is_escaped_sized_by_its_text_and_never_rounds_up_to_100() {
        let b = render("db<x>", "99.99%", GREEN);
        assert!(b.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(b.contains("aria-label=\"db&lt;x&gt;: 99.99%\""));
        assert!(!b.contains("<x>"));
        let wide = render("a much longer component name", "up", GREEN);
        let width = |s: &str| {
            s.split("width=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert!(width(&wide) > width(&b));
        assert_eq!(uptime_colour(0.9995), GREEN);
        assert_eq!(uptime_colour(0.96), ORANGE);
    }
}
