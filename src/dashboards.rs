//! The CloudWatch dashboards of `dashboards/`: rendering their template variables,
//! uploading them with PutDashboard, and the metrics they refer to (so a test can
//! prove each is one Vigil publishes).
//!
//! The bodies are CloudWatch dashboard JSON with three variables, in Terraform's
//! `templatefile` syntax so the same files serve both: `${environment}`, `${region}`
//! and `${account_id}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The variables a dashboard may use.
pub(crate) const VARIABLES: [&str; 3] = ["environment", "region", "account_id"];

/// One dashboard file.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The file's stem (`application`).
    pub stem: String,
    /// The CloudWatch name: `<environment>-watch-together-<stem>`.
    pub name: String,
    /// The rendered body.
    pub body: String,
}

/// The dashboard files of `dir`, sorted by name.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("{}: no dashboard (*.json) files", dir.display()));
    }
    Ok(out)
}

/// Fills `${name}` from `vars`; any other `${…}` is an error. `$${` is a literal
/// `${`, as in Terraform's `templatefile`.
pub fn fill(text: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "an unclosed ${".to_string())?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${{{name}}}: use {}", VARIABLES.join(", ")))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders every dashboard of `dir` for `environment`, `region` and `account_id`;
/// a body that is not JSON after rendering is an error naming its file.
pub fn render(
    dir: &Path,
    environment: &str,
    region: &str,
    account_id: &str,
) -> Result<Vec<Dashboard>, String> {
    let vars: BTreeMap<&str, String> = [
        ("environment", environment.to_string()),
        ("region", region.to_string()),
        ("account_id", account_id.to_string()),
    ]
    .into();
    let mut out = Vec::new();
    for f in files(dir)? {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let body = fill(&text, &vars).map_err(|e| format!("{}: {e}", f.display()))?;
        serde_json::from_str::<Value>(&body).map_err(|e| {
            format!(
                "{}:{}:{}: not JSON after rendering: {e}",
                f.display(),
                e.line(),
                e.column()
            )
        })?;
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push(Dashboard {
            name: format!("{environment}-watch-together-{stem}"),
            stem,
            body,
        });
    }
    Ok(out)
}

/// A metric a dashboard graphs: namespace, name and dimensions (a value of `None`
/// is any value, as a SEARCH expression asks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricRef {
    /// The namespace.
    pub namespace: String,
    /// The metric's name.
    pub name: String,
    /// Dimension names and values, in the order written.
    pub dimensions: Vec<(String, Option<String>)>,
    /// The statistic graphed (`Sum`, `p95`, …), from the row or the widget.
    pub stat: Option<String>,
}

/// Every metric `body` refers to: the metric arrays of its widgets
/// (`[namespace, name, dim, value, …, {options}]`, with `"."` repeating the row
/// above) and the schemas of `SEARCH('{Namespace,Dim,…} MetricName="x" …')`
/// expressions.
pub fn metric_refs(body: &Value) -> Result<Vec<MetricRef>, String> {
    let mut out = Vec::new();
    for w in body["widgets"].as_array().into_iter().flatten() {
        let mut previous: Vec<String> = Vec::new();
        let widget_stat = w["properties"]["stat"].as_str();
        for row in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().ok_or("a metrics entry is not an array")?;
            let mut strings: Vec<String> = Vec::new();
            let mut stat = widget_stat.map(str::to_string);
            for (i, cell) in row.iter().enumerate() {
                match cell {
                    Value::String(s) if s == "." => strings.push(
                        previous
                            .get(i)
                            .cloned()
                            .ok_or("\".\" with no row above to repeat")?,
                    ),
                    Value::String(s) => strings.push(s.clone()),
                    Value::Object(o) => {
                        if let Some(e) = o.get("expression").and_then(Value::as_str) {
                            out.extend(search_refs(e)?);
                        }
                        if let Some(s) = o.get("stat").and_then(Value::as_str) {
                            stat = Some(s.to_string());
                        }
                    }
                    _ => return Err(format!("unexpected metrics entry {cell}")),
                }
            }
            if strings.len() >= 2 {
                if !strings.len().is_multiple_of(2) {
                    return Err(format!("a dimension without a value in {strings:?}"));
                }
                out.push(MetricRef {
                    namespace: strings[0].clone(),
                    name: strings[1].clone(),
                    dimensions: strings[2..]
                        .chunks(2)
                        .map(|p| (p[0].clone(), Some(p[1].clone())))
                        .collect(),
                    stat,
                });
                previous = strings;
            }
        }
    }
    Ok(out)
}

/// The metrics of the SEARCH expressions in `expr`.
fn search_refs(expr: &str) -> Result<Vec<MetricRef>, String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("SEARCH(") {
        rest = &rest[i + 7..];
        let open = rest.find('{').ok_or("SEARCH without a {schema}")?;
        let close = open + rest[open..].find('}').ok_or("SEARCH without a {schema}")?;
        let mut schema = rest[open + 1..close]
            .split(',')
            .map(|s| s.trim().to_string());
        let namespace = schema.next().unwrap_or_default();
        let dims: Vec<(String, Option<String>)> = schema.map(|d| (d, None)).collect();
        let tail = &rest[close..];
        let name = tail
            .split("MetricName=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .ok_or("SEARCH without MetricName=\"…\"")?;
        let stat = tail.split('\'').nth(3).map(str::to_string);
        out.push(MetricRef {
            namespace,
            name: name.to_string(),
            dimensions: dims,
            stat,
        });
    }
    Ok(out)
}

/// Uploads `dashboards` with PutDashboard; returns CloudWatch's validation messages
/// per dashboard (empty when it took the body as is).
pub async fn push(
    client: &aws_sdk_cloudwatch::Client,
    dashboards: &[Dashboard],
) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    for d in dashboards {
        let r = client
            .put_dashboard()
            .dashboard_name(&d.name)
            .dashboard_body(&d.body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "PutDashboard {}: {}",
                    d.name,
                    aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                )
            })?;
        let messages = r
            .dashboard_validation_messages()
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    m.data_path().unwrap_or(""),
                    m.message().unwrap_or("")
                )
            })
            .collect();
        out.push((d.name.clone(), messages));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_filled_and_unknown_ones_refused() {
        let vars: BTreeMap<&str, String> = [("environment", "prod".to_string())].into();
        assert_eq!(fill("a-${environment}-b", &vars), Ok("a-prod-b".into()));
        assert!(
            fill("${nope}", &vars)
                .unwrap_err()
                .contains("unknown variable ${nope}")
        );
        assert!(fill("${environment", &vars).is_err());
        assert_eq!(fill("$${x} ${environment}", &vars), Ok("${x} prod".into()));
        assert!(search_refs("SEARCH('} {NS} MetricName=\"a\"')").is_ok());
    }

    #[test]
    fn refs_come_from_rows_repeats_and_searches() {
        let body: Value = serde_json::from_str(
            r#"{"widgets":[{"properties":{"metrics":[
                ["NS","a","Environment","p",{"stat":"Sum"}],
                [".","b",".","."],
                [{"expression":"SEARCH('{NS,Environment,status} MetricName=\"c\" Environment=\"p\"', 'Sum', 60)","id":"e"}]
            ]}}]}"#,
        )
        .expect("json");
        let refs = metric_refs(&body).expect("refs");
        let dims = |v: Option<&str>| vec![("Environment".to_string(), v.map(str::to_string))];
        assert_eq!(refs[0].name, "a");
        assert_eq!(refs[0].dimensions, dims(Some("p")));
        assert_eq!(
            (refs[1].namespace.as_str(), refs[1].name.as_str()),
            ("NS", "b")
        );
        assert_eq!(refs[1].dimensions, dims(Some("p")));
        assert_eq!(refs[2].name, "c");
        assert_eq!(
            refs[2].dimensions,
            vec![
                ("Environment".to_string(), None),
                ("status".to_string(), None)
            ]
        );
    }
}
