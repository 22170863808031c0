//! Rule files in Prometheus's format, and their evaluation.
//!
//! - [`load`] reads a rule file; every problem is `file:line:col: message`, and an
//!   expression error points into the expression.
//! - [`alerting::AlertingRule`] is the alert state machine (inactive → pending →
//!   firing, `for`, `keep_firing_for`, resolved alerts kept 15 min), with
//!   Prometheus's semantics; [`Group::eval`] runs a group's rules in order at one
//!   instant and writes recorded series and `ALERTS`/`ALERTS_FOR_STATE` into the
//!   store.
//! - [`unittest`] runs rule unit tests in promtool's format (`vigil test rules`).

pub mod alerting;
pub mod manager;
pub mod template;
pub mod unittest;

use std::collections::BTreeMap;

use rustc_hash::FxHashSet as HashSet;
use std::path::Path;

use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::promql::{self, Value};
use crate::settings::duration::{self, Zero};
use crate::settings::{Collector, Problems, yaml};
use crate::store::labels::NAME;
use crate::store::{Labels, Store};
use alerting::AlertingRule;
use template::Template;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    limit: Option<u64>,
    /// Absent, empty or YAML null: a group with no rules, as Prometheus takes it.
    #[serde(default)]
    rules: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    alert: Option<Spanned<String>>,
    #[serde(default)]
    record: Option<Spanned<String>>,
    expr: Spanned<String>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    annotations: Option<Spanned<BTreeMap<String, String>>>,
}

/// Rule evaluation interval when the config does not say.
pub(crate) const DEFAULT_EVALUATION_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(10);

/// A recording rule: stores its expression's result under a new name.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The recorded metric name.
    pub name: String,
    /// The expression.
    pub expr: Expr,
    /// Static labels added to every sample.
    pub labels: Vec<(String, String)>,
}

/// A rule of a group.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `alert:`.
    Alerting(AlertingRule),
    /// `record:`.
    Recording(RecordingRule),
}

impl Group {
    /// Gives every alerting rule of the group the external labels and URL its
    /// templates see.
    pub fn set_external(&mut self, external: &std::sync::Arc<template::External>) {
        for r in &mut self.rules {
            if let Rule::Alerting(a) = r {
                a.external = external.clone();
            }
        }
    }
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(a) => &a.name,
            Rule::Recording(r) => &r.name,
        }
    }
}

/// A group of rules evaluated together, in order.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Its evaluation interval, when it sets one.
    pub interval: Option<std::time::Duration>,
    /// Most alerts (or recorded series) a rule may produce; 0 is no limit.
    pub limit: u64,
    /// The rules in file order.
    pub rules: Vec<Rule>,
    /// Series each rule wrote at the previous evaluation, to mark stale the ones
    /// that disappear (as Prometheus does).
    previous: Vec<HashSet<Labels>>,
}

/// Where a byte offset of an expression falls in the file.
fn expr_position(text: &str, at: &serde_saphyr::Location, expr: &str, offset: usize) -> (u32, u32) {
    let (line, col) = (at.line() as usize, at.column() as usize);
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let rest: String = line_text.chars().skip(col.saturating_sub(1)).collect();
    let before = &expr[..offset.min(expr.len())];
    if rest.starts_with('|') || rest.starts_with('>') {
        // Block scalar: the expression starts on the next line, indented.
        let lines_before = before.matches('\n').count();
        let target = text.lines().nth(line + lines_before).unwrap_or("");
        let indent = target.len() - target.trim_start().len();
        let col_in_line = before.rsplit('\n').next().unwrap_or("").chars().count();
        return (
            (line + 1 + lines_before) as u32,
            (indent + col_in_line + 1) as u32,
        );
    }
    let quote = usize::from(rest.starts_with('"') || rest.starts_with('\''));
    (line as u32, (col + quote + before.chars().count()) as u32)
}

/// Reads and checks one rule file.
pub fn load(path: &Path) -> Result<Vec<Group>, Problems> {
    parse_file(path, &yaml::read(path, "rule file")?)
}

/// Checks rule-file `text`, read from `path`.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<Vec<Group>, Problems> {
    yaml::parse(
        path,
        text,
        None,
        |raw: RawFile, c| Some(build(text, raw, c)),
        |e, c| c.yaml(e),
    )
}

/// A `for:`-like duration in milliseconds; absent (or malformed, noted in `c`) is 0.
fn millis(v: &Option<Spanned<String>>, c: &mut Collector) -> i64 {
    duration::at(v.as_ref(), Zero::Allowed, c).map_or(0, |d| d.as_millis() as i64)
}

/// Parses rule-file `text`, recording problems in `c`.
pub fn parse(text: &str, c: &mut Collector) -> Vec<Group> {
    match yaml::from_str::<RawFile>(text, None, c) {
        Ok(raw) => build(text, raw, c),
        Err(e) => {
            c.yaml(&e);
            Vec::new()
        }
    }
}

/// The groups of a deserialized rule file.
fn build(text: &str, raw: RawFile, c: &mut Collector) -> Vec<Group> {
    let mut names = HashSet::default();
    let mut groups = Vec::new();
    for g in raw.groups {
        if !names.insert(g.name.value.clone()) {
            c.at(
                g.name.referenced,
                format!("group name {:?} is repeated", g.name.value),
            );
        }
        if g.name.value.is_empty() {
            c.at(g.name.referenced, "a group's name must not be empty");
        }
        let interval = duration::at(g.interval.as_ref(), Zero::Refused, c);
        let mut rules = Vec::new();
        for r in g.rules.unwrap_or_default() {
            for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
                for k in map.iter().flat_map(|m| m.value.keys()) {
                    if !crate::promql::valid_label_name(k) || (what == "label" && k == NAME) {
                        let at = map
                            .as_ref()
                            .map(|m| m.referenced)
                            .unwrap_or(r.expr.referenced);
                        c.at(at, format!("invalid {what} name: {k:?}"));
                    }
                }
            }
            let expr = match promql::parse(&r.expr.value) {
                Ok(e) if matches!(e.value_type(), ValueType::Matrix | ValueType::String) => {
                    let kind = if r.alert.is_some() {
                        "an alerting"
                    } else {
                        "a recording"
                    };
                    let got = if e.value_type() == ValueType::Matrix {
                        "a range vector"
                    } else {
                        "a string"
                    };
                    c.at(
                        r.expr.referenced,
                        format!(
                            "{kind} rule's expression must give an instant vector or a scalar, not {got}"
                        ),
                    );
                    None
                }
                Ok(e) => Some(e),
                Err(e) => {
                    let (line, col) =
                        expr_position(text, &r.expr.referenced, &r.expr.value, e.offset);
                    c.at_line_col(line, col, e.message);
                    None
                }
            };
            let labels: Vec<(String, String)> = r
                .labels
                .as_ref()
                .map(|l| {
                    l.value
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            match (&r.alert, &r.record) {
                (Some(a), None) => {
                    let templates = |m: &Option<Spanned<BTreeMap<String, String>>>,
                                     c: &mut Collector| {
                        let mut out = Vec::new();
                        if let Some(m) = m {
                            for (k, v) in &m.value {
                                match Template::parse(v) {
                                    Ok(t) => out.push((k.clone(), t)),
                                    Err(e) => c.at(m.referenced, format!("{k}: {e}")),
                                }
                            }
                        }
                        out
                    };
                    let label_templates = templates(&r.labels, c);
                    let annotations = templates(&r.annotations, c);
                    let hold = millis(&r.for_, c);
                    let keep = millis(&r.keep_firing_for, c);
                    if let Some(expr) = expr {
                        rules.push(Rule::Alerting(AlertingRule::new(
                            &a.value,
                            expr,
                            r.expr.value.clone(),
                            hold,
                            keep,
                            label_templates,
                            annotations,
                        )));
                    }
                }
                (None, Some(rec)) => {
                    if !crate::store::labels::valid_metric_name(&rec.value) {
                        c.at(
                            rec.referenced,
                            format!("invalid recording rule name {:?}", rec.value),
                        );
                    }
                    for (what, v) in [("for", &r.for_), ("keep_firing_for", &r.keep_firing_for)] {
                        if let Some(v) = v {
                            c.at(v.referenced, format!("a recording rule has no {what}"));
                        }
                    }
                    if let Some(a) = &r.annotations {
                        c.at(a.referenced, "a recording rule has no annotations");
                    }
                    if let Some(expr) = expr {
                        rules.push(Rule::Recording(RecordingRule {
                            name: rec.value.clone(),
                            expr,
                            labels,
                        }));
                    }
                }
                (Some(a), Some(_)) => c.at(
                    a.referenced,
                    "a rule has either `alert` or `record`, not both",
                ),
                (None, None) => c.at(r.expr.referenced, "a rule needs `alert` or `record`"),
            }
        }
        let n = rules.len();
        groups.push(Group {
            name: g.name.value,
            interval,
            limit: g.limit.unwrap_or(0),
            rules,
            previous: vec![HashSet::default(); n],
        });
    }
    groups
}

/// What one rule produced at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    /// The rule's name.
    pub rule: String,
    /// The evaluation error, if any.
    pub error: Option<String>,
}

impl Group {
    /// Its alerting rules, in file order.
    pub fn alerting(&self) -> impl Iterator<Item = &AlertingRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }

    /// Its alerting rules, to change.
    pub fn alerting_mut(&mut self) -> impl Iterator<Item = &mut AlertingRule> {
        self.rules.iter_mut().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }

    /// Evaluates every rule at `ts` (ms), in order, writing results into `store`:
    /// recorded series, and `ALERTS`/`ALERTS_FOR_STATE` for pending and firing alerts.
    /// Series a rule wrote last time and not now are marked stale.
    pub fn eval(&mut self, store: &mut Store, ts: i64) -> Vec<RuleOutcome> {
        let mut outcomes = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let result: Result<Vec<(Labels, f64)>, String> = match rule {
                Rule::Recording(r) => eval_recording(r, store, ts, self.limit),
                Rule::Alerting(a) => a.eval(store, ts, self.limit).map(|()| a.series()),
            };
            let (written, error) = match result {
                Ok(samples) => {
                    let mut written =
                        HashSet::with_capacity_and_hasher(samples.len(), Default::default());
                    for (labels, v) in samples {
                        let _ = store.append(&labels, ts, v);
                        written.insert(labels);
                    }
                    (written, None)
                }
                Err(e) => (HashSet::default(), Some(e)),
            };
            for gone in self.previous[i].difference(&written) {
                store.mark_stale(gone, ts);
            }
            self.previous[i] = written;
            outcomes.push(RuleOutcome {
                rule: rule.name().to_string(),
                error,
            });
        }
        outcomes
    }
}

fn eval_recording(
    r: &RecordingRule,
    store: &Store,
    ts: i64,
    limit: u64,
) -> Result<Vec<(Labels, f64)>, String> {
    let samples = match promql::evaluate(&r.expr, store, ts).map_err(|e| e.to_string())? {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels, s.value))
            .collect::<Vec<_>>(),
        Value::Scalar(v) => vec![(Labels::default(), v)],
        _ => return Err("a recording rule must produce a vector".into()),
    };
    let mut seen = HashSet::default();
    let mut out = Vec::with_capacity(samples.len());
    for (labels, v) in samples {
        let mut l = labels.with(crate::store::labels::NAME, &r.name);
        for (k, val) in &r.labels {
            l = l.with(k, val);
        }
        if !seen.insert(l.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((l, v));
    }
    if limit > 0 && out.len() as u64 > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_function_is_reported_inside_the_expression() {
        let mut c = Collector::new(Path::new("rules/critical.yaml"));
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rat(x[5m])) > 1\n";
        parse(text, &mut c);
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            "rules/critical.yaml:5:19: function \"rat\" is not known (did you mean \"rate\"?)"
        );
    }

    #[test]
    fn bad_templates_and_durations_are_load_errors() {
        let mut c = Collector::new(Path::new("r.yaml"));
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5x\n        annotations:\n          summary: '{{ $labels.job | toupper }}'\n";
        parse(text, &mut c);
        let text = c.finish().unwrap_err().to_string();
        assert!(text.contains("r.yaml:6:14: invalid duration"), "{text}");
        assert!(
            text.contains("r.yaml:8:11: summary: template: 1:18: function \"toupper\" not defined"),
            "{text}"
        );
    }

    #[test]
    fn a_null_or_empty_rules_list_is_a_group_without_rules() {
        for rules in ["", "    rules:\n", "    rules: []\n", "    rules: ~\n"] {
            let mut c = Collector::new(Path::new("r.yaml"));
            let text = format!("groups:\n  - name: g\n    limit: 3\n{rules}");
            let groups = parse(&text, &mut c);
            assert!(c.finish().is_ok(), "{rules:?}");
            assert_eq!(groups.len(), 1);
            assert!(groups[0].rules.is_empty());
        }
    }

    #[test]
    fn what_promtool_refuses_is_refused_where_it_is_written() {
        let mut c = Collector::new(Path::new("r.yaml"));
        let text = "groups:\n  - name: ''\n    rules:\n      - alert: A\n        expr: x[5m]\n      - record: r\n        expr: '\"s\"'\n      - alert: B\n        expr: up == 0\n        labels:\n          0bad: x\n          __name__: y\n        annotations:\n          1bad: x\n      - alert: C\n        expr: label_replace(up, \"0dst\", \"$1\", \"job\", \"(.*)\")\n";
        parse(text, &mut c);
        let text = c.finish().unwrap_err().to_string();
        for want in [
            "r.yaml:2:11: a group's name must not be empty",
            "r.yaml:5:15: an alerting rule's expression must give an instant vector or a scalar, not a range vector",
            "r.yaml:7:15: a recording rule's expression must give an instant vector or a scalar, not a string",
            "r.yaml:11:11: invalid label name: \"0bad\"",
            "r.yaml:11:11: invalid label name: \"__name__\"",
            "r.yaml:14:11: invalid annotation name: \"1bad\"",
            "r.yaml:16:",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }
}
