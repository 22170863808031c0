//! Rule unit tests in promtool's format, run the way `promtool test rules` (2.42)
//! runs them: input series in expanding notation, rule groups evaluated from time 0
//! every `evaluation_interval`, firing alerts compared at each `alert_rule_test`'s
//! `eval_time`, and `promql_expr_test` expressions evaluated after the rules.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use serde::Deserialize;

use super::alerting::State;
use super::{Group, Rule};
use crate::promql::{self, Value};
use crate::settings::duration;
use crate::store::{Labels, Store, stale_nan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    /// `$externalLabels` of the rules' templates.
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    /// `$externalURL` of the rules' templates.
    #[serde(default)]
    external_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// A duration that may be zero (`0`, `0s`), in ms.
fn duration_ms(text: &str) -> Result<i64, String> {
    duration::parse_or_zero(text).map(|d| d.as_millis() as i64)
}

/// Formats ms as Prometheus's model.Duration does (`1h5m`, `0s`).
fn show(ms: i64) -> String {
    duration::format(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// Parses a series description (`name{a="b"}`) into labels.
pub fn parse_series(text: &str) -> Result<Labels, String> {
    if text.trim() == "{}" {
        return Ok(Labels::default());
    }
    match promql_parser::parser::parse(text).map_err(|e| format!("invalid series {text:?}: {e}"))? {
        Expr::VectorSelector(v) if v.offset.is_none() => {
            let mut pairs: Vec<(String, String)> = Vec::new();
            if let Some(n) = v.name {
                pairs.push((crate::store::labels::NAME.to_string(), n));
            }
            for m in v.matchers.matchers {
                if !matches!(m.op, MatchOp::Equal) {
                    return Err(format!(
                        "invalid series {text:?}: only = matchers describe a series"
                    ));
                }
                pairs.push((m.name, m.value));
            }
            Ok(Labels::new(pairs))
        }
        _ => Err(format!(
            "invalid series {text:?}: expected name{{label=\"value\"}}"
        )),
    }
}

fn parse_number(s: &str) -> Result<f64, String> {
    crate::float::parse(s).ok_or_else(|| format!("invalid number {s:?}"))
}

/// Expands promtool's value notation: `1 2 3`, `1+2x3` (1, 3, 5, 7), `5x2`
/// (5, 5, 5), `_` (a missed scrape), `_x3` (three), `stale`. `None` is a missed
/// sample.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" {
            out.push(None);
        } else if token == "stale" {
            out.push(Some(stale_nan()));
        } else if let Some(n) = token.strip_prefix("_x") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("invalid repetition in {token:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
        } else if let Some((series, times)) = token.rsplit_once('x') {
            let times: usize = times
                .parse()
                .map_err(|_| format!("invalid repetition in {token:?}"))?;
            // Find the operator of "a+b" / "a-b", not a sign or an exponent's.
            let bytes = series.as_bytes();
            let op = (1..bytes.len())
                .find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
            let (start, inc) = match op {
                Some(i) => {
                    let inc = parse_number(&series[i + 1..])?;
                    (
                        parse_number(&series[..i])?,
                        if bytes[i] == b'-' { -inc } else { inc },
                    )
                }
                None => (parse_number(series)?, 0.0),
            };
            // Cumulative addition, as Prometheus's parser does.
            let mut v = start;
            out.push(Some(v));
            for _ in 0..times {
                v += inc;
                out.push(Some(v));
            }
        } else {
            out.push(Some(parse_number(token)?));
        }
    }
    Ok(out)
}

/// The outcome of one test file.
#[derive(Debug)]
pub struct FileResult {
    /// Lines to print, promtool-style.
    pub report: String,
    /// Whether every test passed.
    pub passed: bool,
}

/// Runs the tests of one file.
pub fn run_file(path: &Path) -> FileResult {
    let mut report = format!("Unit Testing:  {}\n", path.display());
    match run(path) {
        Ok(failures) if failures.is_empty() => {
            report.push_str("  SUCCESS\n\n");
            FileResult {
                report,
                passed: true,
            }
        }
        Ok(failures) => {
            report.push_str("  FAILED:\n");
            for f in failures {
                report.push_str(&f);
                report.push('\n');
            }
            report.push('\n');
            FileResult {
                report,
                passed: false,
            }
        }
        Err(e) => {
            let _ = writeln!(report, "  FAILED:\n{e}\n");
            FileResult {
                report,
                passed: false,
            }
        }
    }
}

fn alerts_text(list: &[(Labels, Labels)]) -> String {
    if list.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[\n");
    for (i, (l, a)) in list.iter().enumerate() {
        let _ = writeln!(
            s,
            "            {i}:\n              Labels:{l}\n              Annotations:{a}"
        );
    }
    s.push_str("            ]");
    s
}

fn samples_text(list: &[(Labels, f64)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(l, v)| format!("{} {}", l, crate::rules::template::go_float(*v)))
        .collect();
    format!("[{}]", items.join(" "))
}

fn run(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("    cannot read {}: {e}", path.display()))?;
    let file: TestFile =
        serde_saphyr::from_str_with_options(&text, serde_saphyr::options! { with_snippet: false })
            .map_err(|e| format!("    {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let eval_interval = match &file.evaluation_interval {
        Some(i) => duration_ms(i)?,
        None => 60_000,
    };
    let mut failures = Vec::new();
    for tg in &file.tests {
        let mut groups: Vec<Group> = Vec::new();
        for rf in &file.rule_files {
            let p: PathBuf = base.join(rf);
            groups.extend(super::load(&p).map_err(|e| format!("    {e}"))?);
        }
        if !file.group_eval_order.is_empty() {
            groups.sort_by_key(|g| {
                file.group_eval_order
                    .iter()
                    .position(|n| *n == g.name)
                    .unwrap_or(usize::MAX)
            });
        }
        failures.extend(run_group(tg, groups, eval_interval).map_err(|e| format!("    {e}"))?);
    }
    Ok(failures)
}

fn run_group(
    tg: &TestGroup,
    mut groups: Vec<Group>,
    eval_interval: i64,
) -> Result<Vec<String>, String> {
    let interval = match &tg.interval {
        Some(i) => duration_ms(i)?,
        None => eval_interval,
    };
    let external = std::sync::Arc::new(super::template::External {
        labels: Labels::new(&tg.external_labels),
        url: tg.external_url.clone(),
    });
    for g in &mut groups {
        g.set_external(&external);
    }
    let mut store = Store::new(usize::MAX, i64::MAX);
    for s in &tg.input_series {
        let labels = parse_series(&s.series)?;
        for (i, v) in expand_values(&s.values)?.into_iter().enumerate() {
            if let Some(v) = v {
                store
                    .append(&labels, i as i64 * interval, v)
                    .map_err(|e| format!("    series {}: {e}", s.series))?;
            }
        }
    }
    let name = tg
        .name
        .as_ref()
        .map(|n| format!("    name: {n},\n"))
        .unwrap_or_default();
    let mut alert_times: Vec<(i64, &AlertTest)> = Vec::new();
    for t in &tg.alert_rule_test {
        alert_times.push((duration_ms(&t.eval_time)?, t));
    }
    alert_times.sort_by_key(|(t, _)| *t);
    let mut expr_times = Vec::new();
    for t in &tg.promql_expr_test {
        expr_times.push(duration_ms(&t.eval_time)?);
    }
    let max = alert_times
        .iter()
        .map(|(t, _)| *t)
        .chain(expr_times.iter().copied())
        .max()
        .unwrap_or(0);
    let mut failures = Vec::new();
    let mut next = 0;
    let mut ts = 0;
    while ts <= max {
        for g in &mut groups {
            for outcome in g.eval(&mut store, ts) {
                if let Some(e) = outcome.error {
                    failures.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        outcome.rule,
                        show(ts)
                    ));
                }
            }
        }
        while next < alert_times.len()
            && alert_times[next].0 >= ts
            && alert_times[next].0 < ts + eval_interval
        {
            let (t, test) = alert_times[next];
            let mut got: Vec<(Labels, Labels)> = Vec::new();
            for g in &groups {
                for r in &g.rules {
                    if let Rule::Alerting(a) = r
                        && a.name == test.alertname
                    {
                        for alert in a.active.values().filter(|x| x.state == State::Firing) {
                            got.push((
                                alert.labels.clone(),
                                Labels::new(alert.annotations.iter().map(|(k, v)| (k, v))),
                            ));
                        }
                    }
                }
            }
            let mut exp: Vec<(Labels, Labels)> = test
                .exp_alerts
                .iter()
                .map(|a| {
                    let labels = Labels::new(
                        a.exp_labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .chain([("alertname", test.alertname.as_str())]),
                    );
                    (labels, Labels::new(&a.exp_annotations))
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                failures.push(format!(
                    "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    test.alertname,
                    show(t),
                    alerts_text(&exp),
                    alerts_text(&got)
                ));
            }
            next += 1;
        }
        ts += eval_interval;
    }
    for (test, at) in tg.promql_expr_test.iter().zip(expr_times) {
        let result = promql::parse(&test.expr)
            .map_err(|e| e.to_string())
            .and_then(|expr| promql::evaluate(&expr, &store, at).map_err(|e| e.to_string()));
        let mut got: Vec<(Labels, f64)> = match result {
            Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.value)).collect(),
            Ok(Value::Scalar(v)) => vec![(Labels::default(), v)],
            Ok(_) => Vec::new(),
            Err(e) => {
                failures.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    test.expr,
                    show(at)
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &test.exp_samples {
            let labels = if s.labels.trim().is_empty() {
                Labels::default()
            } else {
                parse_series(&s.labels)?
            };
            exp.push((labels, s.value));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        // Exact equality, as promtool 2.42 compares (so NaN never equals NaN).
        let equal =
            got.len() == exp.len() && got.iter().zip(&exp).all(|(g, e)| g.0 == e.0 && g.1 == e.1);
        if !equal {
            failures.push(format!(
                "{name}    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                test.expr,
                show(at),
                samples_text(&exp),
                samples_text(&got)
            ));
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        let v = |t| expand_values(t).unwrap();
        assert_eq!(v("1+2x3"), vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(v("5x2"), vec![Some(5.0); 3]);
        assert_eq!(v("-1-1x2"), vec![Some(-1.0), Some(-2.0), Some(-3.0)]);
        assert_eq!(v("_ _x2 4"), vec![None, None, None, Some(4.0)]);
        assert_eq!(v("1e3+1e3x1"), vec![Some(1000.0), Some(2000.0)]);
        assert!(crate::store::is_stale(v("stale")[0].unwrap()));
        assert!(expand_values("1+x").is_err());
    }

    #[test]
    fn series_descriptions() {
        assert_eq!(
            parse_series(r#"up{job="app"}"#).unwrap().to_string(),
            r#"up{job="app"}"#
        );
        assert!(parse_series(r#"up{job=~"a.*"}"#).is_err());
    }
}
