//! Label and annotation templates: Go's `text/template` as Prometheus 2.42 runs it.
//!
//! The language itself (actions, pipelines, variables, `if`/`with`/`range`,
//! `define`/`template`/`block`, Go's builtins and `fmt` verbs) is the `gotmpl` crate,
//! patched in `vendor/gotmpl` where its output differed from Go's. This module adds
//! what Prometheus adds (`template/template.go`): the prelude that defines `$labels`,
//! `$externalLabels`, `$externalURL` and `$value`, `missingkey=zero`, and Prometheus's
//! functions — `query` over the store at the evaluation's instant, `first`, `label`,
//! `value`, `strvalue`, `sortByLabel`, `args`, `reReplaceAll`, `match`, `title`,
//! `toUpper`, `toLower`, `safeHtml`, `stripPort`, `stripDomain`, `graphLink`,
//! `tableLink`, `pathPrefix`, `externalURL`, `parseDuration`, `toTime` and the
//! `humanize` family. A template that does not parse is refused when rules load; one
//! that fails while running expands, as in Prometheus, to
//! `<error expanding template: …>`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{MissingKey, TemplateError, Value as G};

use crate::store::{Labels, Store};

/// Prometheus's prelude, prepended to every template (`rules/alerting.go`).
const PRELUDE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// The name templates run under, as in Go's error messages.
const NAME: &str = "__alert";

/// Most bytes one expansion may write. Prometheus sets no bound; here a rule cannot
/// make one alert's annotation take the daemon's memory (a `range` over a large query
/// result printing wide `printf`s at every evaluation).
const MAX_EXPANSION_BYTES: usize = 1 << 20;

/// Most `range` iterations one expansion may run (Prometheus: no bound), so that a
/// template cannot hold up the rule evaluation.
const MAX_RANGE_ITERATIONS: u64 = 100_000;

/// A `fmt::Write` into a string that refuses to grow past [`MAX_EXPANSION_BYTES`].
#[derive(Default)]
struct Bounded {
    text: String,
    overflowed: bool,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > MAX_EXPANSION_BYTES {
            self.overflowed = true;
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

scoped_tls::scoped_thread_local!(
    /// The store `query` reads while a template expands.
    static STORE: Store
);

thread_local! {
    /// The evaluation's instant (ms) while a template expands.
    static TS: Cell<i64> = const { Cell::new(0) };
    /// The external URL while a template expands.
    static URL: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What a template sees besides its sample: the store for `query`, the evaluation's
/// instant, and the external labels and URL.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The store `query` evaluates over; `None` where there is none (checks).
    pub store: Option<&'a Store>,
    /// The evaluation's instant (ms).
    pub ts: i64,
    /// `$externalLabels`.
    pub external_labels: &'a Labels,
    /// `$externalURL`, and what `externalURL` and `pathPrefix` answer.
    pub external_url: &'a str,
}

/// The external labels and URL of the Vigil running the rules (Prometheus's
/// `global.external_labels` and `--web.external-url`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct External {
    /// `$externalLabels`.
    pub labels: Labels,
    /// `$externalURL`.
    pub url: String,
}

/// A parsed template.
#[derive(Clone)]
pub struct Template {
    /// The template's text.
    source: Arc<str>,
    /// The parsed template, `None` when the text has no action.
    parsed: Option<Arc<gotmpl::Template>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.source == other.source
    }
}

impl Template {
    /// Parses `text` as Prometheus does, with its prelude and functions; the error
    /// names the line and column in `text`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let parsed = if text.contains("{{") {
            let t = gotmpl::Template::new(NAME)
                .missing_key(MissingKey::ZeroValue)
                .max_range_iters(MAX_RANGE_ITERATIONS)
                .funcs(functions())
                .parse(&format!("{PRELUDE}{text}"))
                .map_err(|e| without_prelude(&e))?;
            Some(Arc::new(t))
        } else {
            None
        };
        Ok(Template {
            source: text.into(),
            parsed,
        })
    }

    /// Expands the template for a sample with `labels` and `value`, with no store,
    /// external labels or URL.
    pub fn expand(&self, labels: &Labels, value: f64) -> String {
        let none = Labels::default();
        let env = Env {
            store: None,
            ts: 0,
            external_labels: &none,
            external_url: "",
        };
        self.expand_in(&env, labels, value)
    }

    /// Expands the template for a sample with `labels` and `value` in `env`.
    pub fn expand_in(&self, env: &Env<'_>, labels: &Labels, value: f64) -> String {
        let Some(t) = &self.parsed else {
            return self.source.to_string();
        };
        let data = G::from(BTreeMap::from([
            ("Labels".to_string(), labels_value(labels)),
            (
                "ExternalLabels".to_string(),
                labels_value(env.external_labels),
            ),
            ("ExternalURL".to_string(), G::from(env.external_url)),
            ("Value".to_string(), G::Float(value)),
        ]));
        TS.with(|c| c.set(env.ts));
        URL.with(|u| env.external_url.clone_into(&mut u.borrow_mut()));
        let mut out = Bounded::default();
        let mut run = || t.execute_fmt(&mut out, &data);
        let result = match env.store {
            Some(store) => STORE.set(store, run),
            None => run(),
        };
        match result {
            Ok(()) => out.text,
            Err(_) if out.overflowed => format!(
                "<error expanding template: the expansion is longer than {MAX_EXPANSION_BYTES} bytes>"
            ),
            Err(e) => format!("<error expanding template: {e}>"),
        }
    }
}

/// A parse error with the prelude taken out of its column.
fn without_prelude(e: &TemplateError) -> String {
    let text = e.to_string();
    let prefix = format!("template: {NAME}:1:");
    if let Some(rest) = text.strip_prefix(&prefix)
        && let Some((col, msg)) = rest.split_once(':')
        && let Ok(col) = col.parse::<usize>()
    {
        return format!(
            "template: 1:{}:{msg}",
            col.saturating_sub(PRELUDE.len()).max(1)
        );
    }
    text.replacen(&format!("template: {NAME}:"), "template: ", 1)
}

/// A label set as the `map[string]string` templates see.
fn labels_value(labels: &Labels) -> G {
    G::from(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), G::from(v)))
            .collect::<BTreeMap<String, G>>(),
    )
}

/// A query result's sample: `.Labels` and `.Value`, as Prometheus's `sample` struct.
fn sample_value(labels: &Labels, value: f64) -> G {
    G::from(BTreeMap::from([
        ("Labels".to_string(), labels_value(labels)),
        ("Value".to_string(), G::Float(value)),
    ]))
}

/// A function's error, as Go's `error calling NAME: …` carries it.
fn fail(msg: impl Into<String>) -> gotmpl::TemplateError {
    TemplateError::Exec(msg.into())
}

/// Go's `convertToFloat`: numbers as they are, strings parsed.
fn to_float(v: &G) -> Result<f64, TemplateError> {
    match v {
        G::Float(f) => Ok(*f),
        G::Int(i) => Ok(*i as f64),
        G::Uint(u) => Ok(*u as f64),
        G::String(s) => go_parse_float(s)
            .ok_or_else(|| fail(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
        other => Err(fail(format!(
            "can't convert {} to float",
            other.type_name()
        ))),
    }
}

/// Go's `strconv.ParseFloat` for the forms alert values take: decimal, exponent,
/// `Inf`/`+Inf`/`-Inf`/`Infinity` and `NaN` in any case.
fn go_parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (sign, body) = match lower.strip_prefix('-') {
        Some(b) => (-1.0, b),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match body {
        "inf" | "infinity" => Some(sign * f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            body.replace('_', "").parse::<f64>().ok().map(|v| sign * v)
        }
        _ => None,
    }
}

fn string_arg<'a>(args: &'a [G], i: usize, func: &str) -> Result<&'a str, TemplateError> {
    match args.get(i) {
        Some(G::String(s)) => Ok(s),
        Some(other) => Err(fail(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        ))),
        None => Err(fail(format!("wrong number of args for {func}"))),
    }
}

fn arity(args: &[G], n: usize, func: &str) -> Result<(), TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(fail(format!(
            "wrong number of args for {func}: want {n} got {}",
            args.len()
        )))
    }
}

/// A sample's labels map (`.Labels`), or an error for anything else.
fn sample_labels<'a>(s: &'a G, func: &str) -> Result<&'a G, TemplateError> {
    s.field("Labels")
        .ok_or_else(|| fail(format!("{func}: expected a sample, got {}", s.type_name())))
}

type Func = fn(&[G]) -> Result<G, TemplateError>;

/// Prometheus's template functions.
fn functions() -> gotmpl::FuncMap {
    let table: [(&str, Func); 26] = [
        ("query", query),
        ("first", |a| {
            arity(a, 1, "first")?;
            match &a[0] {
                G::List(l) => l
                    .first()
                    .cloned()
                    .ok_or_else(|| fail("first() called on vector with no elements")),
                G::Nil => Err(fail("first() called on vector with no elements")),
                other => Err(fail(format!(
                    "wrong type for value; expected []*template.sample; got {}",
                    other.type_name()
                ))),
            }
        }),
        ("label", |a| {
            arity(a, 2, "label")?;
            let name = string_arg(a, 0, "label")?;
            let labels = sample_labels(&a[1], "label")?;
            Ok(labels.field(name).cloned().unwrap_or_else(|| G::from("")))
        }),
        ("value", |a| {
            arity(a, 1, "value")?;
            a[0].field("Value")
                .cloned()
                .ok_or_else(|| fail("value: expected a sample"))
        }),
        ("strvalue", |a| {
            arity(a, 1, "strvalue")?;
            let labels = sample_labels(&a[0], "strvalue")?;
            Ok(labels
                .field("__value__")
                .cloned()
                .unwrap_or_else(|| G::from("")))
        }),
        ("args", |a| {
            Ok(G::from(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("arg{i}"), v.clone()))
                    .collect::<BTreeMap<String, G>>(),
            ))
        }),
        ("reReplaceAll", |a| {
            arity(a, 3, "reReplaceAll")?;
            let re = regex::Regex::new(string_arg(a, 0, "reReplaceAll")?)
                .map_err(|e| fail(e.to_string()))?;
            let repl = string_arg(a, 1, "reReplaceAll")?;
            let text = string_arg(a, 2, "reReplaceAll")?;
            let out = re.replace_all(text, |caps: &regex::Captures<'_>| {
                let mut s = String::new();
                crate::promql::go_expand(caps, repl, &mut s);
                s
            });
            Ok(G::from(out.into_owned()))
        }),
        ("safeHtml", |a| {
            arity(a, 1, "safeHtml")?;
            Ok(G::from(string_arg(a, 0, "safeHtml")?))
        }),
        ("match", |a| {
            arity(a, 2, "match")?;
            let re =
                regex::Regex::new(string_arg(a, 0, "match")?).map_err(|e| fail(e.to_string()))?;
            Ok(G::Bool(re.is_match(string_arg(a, 1, "match")?)))
        }),
        ("title", |a| {
            arity(a, 1, "title")?;
            Ok(G::from(go_title(string_arg(a, 0, "title")?)))
        }),
        ("toUpper", |a| {
            arity(a, 1, "toUpper")?;
            Ok(G::from(go_map_runes(string_arg(a, 0, "toUpper")?, |c| {
                c.to_uppercase().collect()
            })))
        }),
        ("toLower", |a| {
            arity(a, 1, "toLower")?;
            Ok(G::from(go_map_runes(string_arg(a, 0, "toLower")?, |c| {
                c.to_lowercase().collect()
            })))
        }),
        ("graphLink", |a| {
            arity(a, 1, "graphLink")?;
            Ok(G::from(format!(
                "/graph?g0.expr={}&g0.tab=0",
                gotmpl::url_encode(string_arg(a, 0, "graphLink")?)
            )))
        }),
        ("tableLink", |a| {
            arity(a, 1, "tableLink")?;
            Ok(G::from(format!(
                "/graph?g0.expr={}&g0.tab=1",
                gotmpl::url_encode(string_arg(a, 0, "tableLink")?)
            )))
        }),
        ("sortByLabel", |a| {
            arity(a, 2, "sortByLabel")?;
            let name = string_arg(a, 0, "sortByLabel")?;
            let G::List(list) = &a[1] else {
                return Ok(a[1].clone());
            };
            let mut v: Vec<G> = list.to_vec();
            let key = |s: &G| {
                s.field("Labels")
                    .and_then(|l| l.field(name))
                    .and_then(G::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            v.sort_by_key(key);
            Ok(G::from(v))
        }),
        ("humanize", |a| {
            arity(a, 1, "humanize")?;
            Ok(G::from(humanize(to_float(&a[0])?)))
        }),
        ("humanize1024", |a| {
            arity(a, 1, "humanize1024")?;
            Ok(G::from(humanize1024(to_float(&a[0])?)))
        }),
        ("humanizeDuration", |a| {
            arity(a, 1, "humanizeDuration")?;
            Ok(G::from(humanize_duration(to_float(&a[0])?)))
        }),
        ("humanizePercentage", |a| {
            arity(a, 1, "humanizePercentage")?;
            Ok(G::from(format!("{}%", go_g(to_float(&a[0])? * 100.0, 4))))
        }),
        ("humanizeTimestamp", |a| {
            arity(a, 1, "humanizeTimestamp")?;
            let v = to_float(&a[0])?;
            if v.is_finite() {
                go_time(v).map(G::from)
            } else {
                Ok(G::from(go_g(v, 4)))
            }
        }),
        ("toTime", |a| {
            arity(a, 1, "toTime")?;
            let v = to_float(&a[0])?;
            if v.is_finite() {
                go_time(v).map(G::from)
            } else {
                Err(fail("value is NaN or Inf"))
            }
        }),
        ("pathPrefix", |a| {
            arity(a, 0, "pathPrefix")?;
            Ok(G::from(URL.with(|u| url_path(&u.borrow()))))
        }),
        ("externalURL", |a| {
            arity(a, 0, "externalURL")?;
            Ok(G::from(URL.with(|u| u.borrow().clone())))
        }),
        ("parseDuration", |a| {
            arity(a, 1, "parseDuration")?;
            let s = string_arg(a, 0, "parseDuration")?;
            model_duration_ms(s)
                .map(|ms| G::Float(ms as f64 / 1000.0))
                .ok_or_else(|| fail(format!("not a valid duration string: {s:?}")))
        }),
        ("stripPort", |a| {
            arity(a, 1, "stripPort")?;
            let hp = string_arg(a, 0, "stripPort")?;
            Ok(G::from(split_host_port(hp).map_or(hp, |(h, _)| h)))
        }),
        ("stripDomain", |a| {
            arity(a, 1, "stripDomain")?;
            Ok(G::from(strip_domain(string_arg(a, 0, "stripDomain")?)))
        }),
    ];
    table
        .into_iter()
        .map(|(name, f)| {
            let f: gotmpl::ValueFunc = Arc::new(move |a: &[G]| f(a));
            (name.to_string(), f)
        })
        .collect()
}

/// `query`: an instant query over the store at the evaluation's instant.
fn query(a: &[G]) -> Result<G, TemplateError> {
    arity(a, 1, "query")?;
    let q = string_arg(a, 0, "query")?;
    if !STORE.is_set() {
        return Err(fail("query: no store to query here"));
    }
    let expr = crate::promql::parse(q).map_err(|e| fail(e.to_string()))?;
    let ts = TS.with(Cell::get);
    let value = STORE
        .with(|store| crate::promql::evaluate(&expr, store, ts))
        .map_err(|e| fail(e.to_string()))?;
    let samples = match value {
        crate::promql::Value::Vector(v) => {
            v.iter().map(|s| sample_value(&s.labels, s.value)).collect()
        }
        crate::promql::Value::Scalar(v) => vec![sample_value(&Labels::default(), v)],
        // Prometheus's EngineQueryFunc, which templates query through.
        crate::promql::Value::String(_) | crate::promql::Value::Matrix(_) => {
            return Err(fail("rule result is not a vector or scalar"));
        }
    };
    Ok(G::from(samples))
}

/// Go's `strings.Title`: the first letter of each word upper-cased, where words are
/// separated as `isSeparator` says.
fn go_title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if separator(prev) {
            out.push(go_title_rune(c));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Maps each rune as Go's `unicode.ToUpper`/`ToLower` do: one rune for one, so a rune
/// whose full mapping is several (`ß` → `SS`) stays, and there is no context (a
/// final `Σ` lowers to `σ`, not `ς`).
fn go_map_runes(s: &str, map: impl Fn(char) -> Vec<char>) -> String {
    s.chars()
        .map(|c| match map(c).as_slice() {
            [one] => *one,
            _ => c,
        })
        .collect()
}

/// Go's `unicode.ToTitle` of one rune: the upper case, except for the four digraphs
/// whose title case is their own letter (`ǆ` → `ǅ`).
fn go_title_rune(c: char) -> char {
    match c {
        'Ǆ' | 'ǅ' | 'ǆ' => 'ǅ',
        'Ǉ' | 'ǈ' | 'ǉ' => 'ǈ',
        'Ǌ' | 'ǋ' | 'ǌ' => 'ǋ',
        'Ǳ' | 'ǲ' | 'ǳ' => 'ǲ',
        _ => match c.to_uppercase().collect::<Vec<char>>().as_slice() {
            [one] => *one,
            _ => c,
        },
    }
}

/// Prometheus's `model.ParseDuration` in milliseconds: `0`, or units y, w, d, h, m,
/// s, ms in that order, each at most once, no sign or space; `None` when malformed
/// or past what an int64 of nanoseconds holds.
fn model_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let (i, unit) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| after.starts_with(u))
            // "ms" before "m": the longer unit that fits.
            .max_by_key(|(_, (u, _))| u.len())?;
        total = total.checked_add(n.checked_mul(unit.1)?)?;
        next_unit = i + 1;
        rest = &after[unit.0.len()..];
    }
    // Go keeps a Duration in int64 nanoseconds.
    if s.is_empty() || total > i64::MAX / 1_000_000 {
        None
    } else {
        Some(total)
    }
}

/// Go's `net.SplitHostPort` for the forms targets take (`host:port`,
/// `[v6]:port`); `None` where it fails.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return (!port.contains(':')).then_some((host, port));
    }
    let (host, port) = hp.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

/// Prometheus's `stripDomain`: the host's first label, the port kept, IPs untouched.
fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let short = host.split('.').next().unwrap_or(host);
    match port {
        "" => short.to_string(),
        p if short.contains(':') => format!("[{short}]:{p}"),
        p => format!("{short}:{p}"),
    }
}

/// The path of an external URL (`pathPrefix`).
fn url_path(url: &str) -> String {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    match after.find('/') {
        Some(i) => after[i..]
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    }
}

/// Go's `time.Time.String()` of a Unix time in seconds, UTC, at Prometheus's
/// millisecond precision: `1970-01-01 00:00:01.5 +0000 UTC`; an error past what
/// int64 nanoseconds hold, as Prometheus's `floatToTime` gives.
fn go_time(v: f64) -> Result<String, TemplateError> {
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(fail(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            go_float_v(v)
        )));
    }
    let ms = ns as i64 / 1_000_000;
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return Ok(go_g(v, 4));
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let f = format!(".{frac:03}");
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// A float as Go's `%v` writes it (`1e+10`), through the template engine's own
/// formatting.
fn go_float_v(v: f64) -> String {
    G::Float(v).to_string()
}

/// Go's `%.{prec}g`: shortest of %e and %f at `prec` significant digits, trailing
/// zeros removed, exponent written `e+06`; the form is chosen after rounding.
pub(crate) fn go_g(v: f64, prec: usize) -> String {
    if let Some(text) = crate::float::non_finite_text(v) {
        return text.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        with_exponent(&trim_zeros(mantissa), exp)
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}"))
    }
}

/// A mantissa and a decimal exponent as Go writes them: `1.5e+06`, `2e-05`.
fn with_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Go's default formatting of a float64 (`%v`): the shortest representation, in
/// exponent form below 1e-4 and from 1e21, as Go's `strconv` writes JSON-like output
/// and promtool prints sample values.
pub(crate) fn go_float(v: f64) -> String {
    if let Some(text) = crate::float::non_finite_text(v) {
        return text.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        with_exponent(m, e.parse().unwrap_or(0))
    } else {
        format!("{v}")
    }
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes from 1024 up.
fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanizeDuration`: `1d 2h 3m 4s` from a second up, SI-prefixed
/// seconds below.
fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, v: f64) -> String {
        let l = Labels::from_pairs("up", &[("job", "app"), ("instance", "a:1")]);
        Template::parse(t).unwrap().expand(&l, v)
    }

    #[test]
    fn expands_like_prometheus() {
        assert_eq!(
            expand("{{ $labels.job }} is down ({{ $value }})", 0.0),
            "app is down (0)"
        );
        assert_eq!(expand("{{ $value }}", 1234567.0), "1.234567e+06");
        assert_eq!(expand("{{ $value }}", f64::INFINITY), "+Inf");
        assert_eq!(
            expand("{{ $labels }}", 1.0),
            "map[__name__:up instance:a:1 job:app]"
        );
        assert_eq!(expand("{{ $value | printf \"%.2f\" }}", 0.12345), "0.12");
        assert_eq!(
            expand("{{ printf \"%d\" $value }}", 1.5),
            "%!d(float64=1.5)"
        );
        assert_eq!(expand("{{ printf \"%.4g\" $value }}", 9999.5), "1e+04");
        assert_eq!(expand("{{ $value | humanizePercentage }}", 0.0512), "5.12%");
        assert_eq!(expand("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(expand("{{ humanize $value }}", 0.0025), "2.5m");
        assert_eq!(expand("{{ $value | humanizeDuration }}", 2.5), "2.5s");
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 3725.0),
            "1h 2m 5s"
        );
        assert_eq!(expand("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(expand("{{$labels.missing}}x", 1.0), "x");
        assert_eq!(
            expand("{{ $labels.instance | stripPort | toUpper }}", 1.0),
            "A"
        );
        assert_eq!(
            expand(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                1.0
            ),
            "__name__=up;instance=a:1;job=app;"
        );
        assert_eq!(
            expand("{{ if gt $value 1.0 }}high{{ else }}low{{ end }}", 2.0),
            "high"
        );
        assert_eq!(expand("{{ \"hello world\" | title }}", 0.0), "Hello World");
        assert_eq!(
            expand("{{ 1.5 | humanizeTimestamp }}", 0.0),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert!(expand("{{ query \"up\" }}", 0.0).starts_with("<error expanding template: "));
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e-5), "1e-05");
        assert_eq!(go_g(123456.0, 4), "1.235e+05");
    }

    #[test]
    fn query_reads_the_store_at_the_evaluation_instant() {
        let store = Store::new(1000, 3_600_000);
        let mut store = store;
        store
            .append(&Labels::from_pairs("m", &[("i", "b")]), 10_000, 2.0)
            .unwrap();
        store
            .append(&Labels::from_pairs("m", &[("i", "a")]), 10_000, 1.0)
            .unwrap();
        let none = Labels::default();
        let env = Env {
            store: Some(&store),
            ts: 20_000,
            external_labels: &none,
            external_url: "http://vigil.example:9100/x",
        };
        let t = Template::parse(
            "{{ range query \"m\" | sortByLabel \"i\" }}{{ .Labels.i }}={{ .Value }} {{ end }}{{ with query \"sum(m)\" }}{{ . | first | value }}{{ end }} {{ pathPrefix }}",
        )
        .unwrap();
        assert_eq!(t.expand_in(&env, &none, 0.0), "a=1 b=2 3 /x");
    }

    /// promtool 2.42 renders `%.1000000000f|x` of 0.5 as
    /// `%!(NOVERB)%!(EXTRA float64=0.5)`, and `%1000001d` as a million spaces.
    #[test]
    fn huge_widths_are_bounded_and_read_as_go_reads_them() {
        assert_eq!(
            expand("{{ printf \"%.1000000000f|x\" $value }}", 0.5),
            "%!(NOVERB)%!(EXTRA float64=0.5)"
        );
        assert_eq!(expand("{{ printf \"%.5000f\" $value | len }}", 0.5), "5002");
        let wide = expand("{{ printf \"%1000001d|y\" 5 }}", 0.5);
        assert!(
            wide.len() <= 65_540 && wide.ends_with("5|y"),
            "{}",
            wide.len()
        );
        assert_eq!(expand("{{ printf \"abc%\" }}", 0.5), "abc%!(NOVERB)");
    }

    /// A template cannot take the daemon's memory or time: its output and its
    /// `range` iterations are bounded, and recursion ends in an error.
    #[test]
    fn a_template_is_bounded_in_size_iterations_and_depth() {
        let huge = expand(
            "{{ range $i := args 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 }}{{ printf \"%65000d\" 1 }}{{ end }}",
            0.0,
        );
        assert!(
            huge.starts_with("<error expanding template: the expansion is longer than"),
            "{}",
            &huge[..80]
        );
        let deep = expand(
            "{{ define \"a\" }}{{ template \"a\" . }}{{ end }}{{ template \"a\" . }}",
            0.0,
        );
        assert!(deep.starts_with("<error expanding template:"), "{deep}");
    }

    /// What a review found differing from Prometheus 2.42 and Go 1.19, each checked
    /// against their sources.
    #[test]
    fn edges_as_prometheus_and_go_have_them() {
        assert!(expand("{{ humanizeTimestamp 1e10 }}", 0.0).contains(
            "1e+10 cannot be represented as a nanoseconds timestamp since it overflows int64"
        ));
        assert!(expand("{{ toTime $value }}", f64::NAN).contains("value is NaN or Inf"));
        assert_eq!(expand("{{ parseDuration \"1w\" }}", 0.0), "604800");
        assert_eq!(
            expand("{{ parseDuration \"1y2w3d4h5m6s7ms\" }}", 0.0),
            "3.3019506007e+07"
        );
        assert!(expand("{{ parseDuration \" 1h\" }}", 0.0).starts_with("<error"));
        assert!(expand("{{ parseDuration \"1h1h\" }}", 0.0).starts_with("<error"));
        assert_eq!(expand("{{ toUpper \"straße\" }}", 0.0), "STRAßE");
        assert_eq!(expand("{{ toLower \"ΟΣ\" }}", 0.0), "οσ");
        assert_eq!(expand("{{ title \"ǆx ǳy\" }}", 0.0), "ǅx ǲy");
        assert_eq!(
            expand(
                "{{ printf \"% f|% f|%+f|%F\" $value $value $value 1.5 }}",
                f64::INFINITY
            ),
            " Inf| Inf|+Inf|1.500000"
        );
        assert_eq!(expand("{{ if false }}{{ $x = 1 }}{{ end }}ok", 0.0), "ok");
        for refused in [
            "{{ with 1 }}{{ else if true }}{{ end }}",
            "{{ range $labels }}{{ else if true }}{{ end }}",
            "{{ if true }}{{ else with 1 }}{{ end }}",
        ] {
            assert!(Template::parse(refused).is_err(), "{refused}");
        }
        assert_eq!(
            expand("{{ if false }}a{{ else if true }}b{{ end }}", 0.0),
            "b"
        );
    }

    #[test]
    fn refuses_what_does_not_parse() {
        for bad in [
            "{{ $value",
            "{{ nosuchfunction $value }}",
            "{{ $undefined }}",
            "{{ if }}",
            "{{ end }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} was accepted");
        }
        let e = Template::parse("ab {{ nosuch }}").unwrap_err();
        assert!(e.contains("nosuch"), "{e}");
    }
}
