//! `mode: emf`: CloudWatch Embedded Metric Format, one JSON object per line on
//! stdout. The ECS awslogs driver ships each line to CloudWatch Logs, which turns it
//! into the same metrics with no PutMetricData call.
//!
//! The specification allows a metric's value to be a number or an array of at most
//! 100 numbers, and nothing else (no statistic sets, no counts), so in this mode
//! summaries and distributions are sent as the values themselves — see
//! [`super::aggregate::datums`]'s `expand` — and split over lines of 100 values.
//! Every line is checked by [`validate`] before it is written.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::config::UNITS;
use super::{CloudWatchConfig, Datum, DatumValue, Sink};
use crate::peer::SendError;

/// Metrics per directive (and per line).
pub(crate) const MAX_METRICS: usize = 100;
/// Values per metric array.
pub(crate) const MAX_VALUES: usize = 100;
/// Dimension keys per dimension set.
pub(crate) const MAX_DIMENSIONS: usize = 30;
/// Longest dimension value.
pub(crate) const MAX_DIMENSION_VALUE: usize = 1024;
/// Largest log event.
pub(crate) const MAX_EVENT_BYTES: usize = 1_048_576;
/// Most values one datum expands to (100 lines); a larger distribution (a busy
/// histogram) is left out and counted, since EMF cannot carry counts: publish such
/// metrics with `mode: api`.
pub(crate) const MAX_EXPANDED: usize = 10_000;

/// Writes EMF lines.
pub struct EmfSink {
    /// The namespace.
    namespace: String,
    /// Where lines go.
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmfSink {
    /// A sink writing to stdout.
    pub fn stdout(cfg: &CloudWatchConfig) -> EmfSink {
        EmfSink::to(cfg, Box::new(std::io::stdout()))
    }

    /// A sink writing to `out`.
    pub fn to(cfg: &CloudWatchConfig, out: Box<dyn Write + Send>) -> EmfSink {
        EmfSink {
            namespace: cfg.namespace.clone(),
            out: Mutex::new(out),
        }
    }
}

/// Whether EMF can carry `v`: a distribution expands to one value per observation,
/// and more than [`MAX_EXPANDED`] of them are left out.
fn writable(v: &DatumValue) -> bool {
    match v {
        DatumValue::Distribution { counts, .. } => {
            counts.iter().sum::<f64>() <= MAX_EXPANDED as f64
        }
        _ => true,
    }
}

/// One metric's values as EMF takes them: each distinct value repeated by its
/// count (counts are whole for every stat Vigil sends), in chunks of [`MAX_VALUES`];
/// nothing when it is not [`writable`].
fn value_chunks(v: &DatumValue) -> Vec<Value> {
    match v {
        DatumValue::Single(x) => vec![json!(x)],
        // Not produced in EMF mode (the aggregation expands summaries); a set cannot
        // be written exactly, so it is written as its mean, once.
        DatumValue::Stats { count, sum, .. } => vec![json!(sum / count)],
        DatumValue::Distribution { .. } if !writable(v) => Vec::new(),
        DatumValue::Distribution { values, counts } => {
            let all: Vec<f64> = values
                .iter()
                .zip(counts)
                .flat_map(|(v, c)| std::iter::repeat_n(*v, c.round().max(0.0) as usize))
                .collect();
            all.chunks(MAX_VALUES)
                .map(|c| if c.len() == 1 { json!(c[0]) } else { json!(c) })
                .collect()
        }
    }
}

/// Datums of `batch` that EMF cannot carry (see [`MAX_EXPANDED`]).
pub(crate) fn unwritable(batch: &[Datum]) -> usize {
    batch.iter().filter(|d| !writable(&d.value)).count()
}

/// One line being filled: the metrics' values and their definitions.
#[derive(Default)]
struct Line {
    /// Metric name → value or array of values.
    values: Map<String, Value>,
    /// `{"Name", "Unit", "StorageResolution"}` per metric.
    metrics: Vec<Value>,
}

/// The EMF lines for `batch`: datums with the same dimensions and timestamp share a
/// line, up to [`MAX_METRICS`] metrics and one value array per metric name.
pub fn render(namespace: &str, batch: &[Datum]) -> Vec<String> {
    // Per (timestamp, dimensions), the lines being filled.
    type Key<'a> = (i64, &'a [(String, String)]);
    let mut groups: BTreeMap<Key, Vec<Line>> = BTreeMap::new();
    for d in batch {
        let lines = groups
            .entry((d.timestamp_ms, d.dimensions.as_slice()))
            .or_default();
        for chunk in value_chunks(&d.value) {
            // The first line of this key without this metric and with room.
            let i = lines
                .iter()
                .position(|l| !l.values.contains_key(&d.name) && l.metrics.len() < MAX_METRICS)
                .unwrap_or_else(|| {
                    lines.push(Line::default());
                    lines.len() - 1
                });
            lines[i].values.insert(d.name.clone(), chunk);
            let mut def = json!({"Name": d.name});
            if let Some(u) = &d.unit {
                def["Unit"] = json!(u);
            }
            if d.high_resolution {
                def["StorageResolution"] = json!(1);
            }
            lines[i].metrics.push(def);
        }
    }
    let mut out = Vec::new();
    for ((t, dims), lines) in groups {
        for line in lines {
            let mut root = Map::new();
            for (k, v) in dims {
                root.insert(k.clone(), json!(v));
            }
            let names: Vec<&String> = dims.iter().map(|(k, _)| k).collect();
            root.insert(
                "_aws".into(),
                json!({
                    "Timestamp": t,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [names],
                        "Metrics": line.metrics,
                    }],
                }),
            );
            root.extend(line.values);
            out.push(Value::Object(root).to_string());
        }
    }
    out
}

/// Checks one line against the EMF specification and its limits.
pub fn validate(line: &str) -> Result<(), String> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(format!("{} bytes: above the 1 MB event limit", line.len()));
    }
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("the event is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    if !aws.get("Timestamp").is_some_and(Value::is_i64) {
        return Err("_aws.Timestamp must be integer milliseconds".into());
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics must be an array")?;
    for d in directives {
        let ns = d
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or("a directive has no Namespace")?;
        if ns.is_empty() || ns.len() > 1024 {
            return Err("Namespace must be 1 to 1024 characters".into());
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions must be an array")?;
        for set in sets {
            let set = set.as_array().ok_or("a DimensionSet must be an array")?;
            if set.len() > MAX_DIMENSIONS {
                return Err(format!("{} dimensions in a set: at most 30", set.len()));
            }
            for k in set {
                let k = k.as_str().ok_or("a dimension key must be a string")?;
                if k.len() > 250 {
                    return Err(format!("dimension key {k} is longer than 250"));
                }
                match root.get(k).and_then(Value::as_str) {
                    Some(v) if !v.is_empty() && v.len() <= MAX_DIMENSION_VALUE => {}
                    _ => {
                        return Err(format!(
                            "dimension {k} must reference a string member of 1 to 1024 characters"
                        ));
                    }
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("Metrics must be an array")?;
        if metrics.len() > MAX_METRICS {
            return Err(format!(
                "{} metrics in a directive: at most 100",
                metrics.len()
            ));
        }
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            if name.is_empty() || name.len() > 1024 {
                return Err("a metric Name must be 1 to 1024 characters".into());
            }
            if let Some(u) = m.get("Unit")
                && !u.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                return Err(format!("metric {name}: unknown Unit {u}"));
            }
            if let Some(r) = m.get("StorageResolution")
                && !matches!(r.as_i64(), Some(1 | 60))
            {
                return Err(format!("metric {name}: StorageResolution must be 1 or 60"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a))
                    if a.len() <= MAX_VALUES && a.iter().all(Value::is_number) => {}
                Some(Value::Array(a)) => {
                    return Err(format!(
                        "metric {name}: an array of {} values, at most 100 numbers",
                        a.len()
                    ));
                }
                _ => {
                    return Err(format!(
                        "metric {name} must reference a number or an array of numbers"
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Sink for EmfSink {
    fn max_datums(&self) -> usize {
        1_000
    }

    fn max_bytes(&self) -> usize {
        usize::MAX
    }

    async fn send(&self, batch: &[Datum]) -> Result<(), SendError> {
        let too_large = unwritable(batch);
        if too_large > 0 {
            tracing::warn!(
                message = "Left out distributions too large for EMF; publish them with mode: api.",
                datums = too_large,
                max_values = MAX_EXPANDED
            );
        }
        let mut text = String::new();
        for line in render(&self.namespace, batch) {
            if let Err(e) = validate(&line) {
                return Err(SendError::permanent(format!(
                    "an EMF line breaks the specification: {e}"
                )));
            }
            text.push_str(&line);
            text.push('\n');
        }
        let mut out = self.out.lock().expect("stdout lock");
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| SendError::retry(format!("cannot write EMF lines: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(name: &str, dims: &[(&str, &str)], value: DatumValue) -> Datum {
        Datum {
            name: name.into(),
            dimensions: dims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timestamp_ms: 1_700_000_000_000,
            value,
            unit: Some("Seconds".into()),
            high_resolution: false,
        }
    }

    #[test]
    fn lines_follow_the_specification_and_its_limits() {
        let env = [("Environment", "test"), ("Service", "svc")];
        let mut batch: Vec<Datum> = (0..150)
            .map(|i| datum(&format!("m{i}"), &env, DatumValue::Single(i as f64)))
            .collect();
        batch.push(datum(
            "d",
            &[("Environment", "test"), ("probe", "cache")],
            DatumValue::Distribution {
                values: vec![0.5, 1.0],
                counts: vec![120.0, 30.0],
            },
        ));
        let lines = render("NS", &batch);
        for l in &lines {
            validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        }
        // 150 single metrics: two lines (100 + 50); 150 values of d: two lines.
        assert_eq!(lines.len(), 4);
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let d_values: Vec<f64> = parsed
            .iter()
            .filter_map(|p| p.get("d"))
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().map(|x| x.as_f64().expect("number")).collect(),
                x => vec![x.as_f64().expect("number")],
            })
            .collect();
        assert_eq!(d_values.len(), 150);
        assert_eq!(d_values.iter().sum::<f64>(), 120.0 * 0.5 + 30.0);
        let first = &parsed[0];
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment", "Service"]])
        );
        assert_eq!(first["Environment"], "test");
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );
    }

    #[test]
    fn distributions_too_large_to_expand_are_left_out() {
        let big = datum(
            "h",
            &[("Environment", "test")],
            DatumValue::Distribution {
                values: vec![0.1, 1.0],
                counts: vec![9_000.0, 1_001.0],
            },
        );
        let small = datum("g", &[("Environment", "test")], DatumValue::Single(1.0));
        let batch = [big, small];
        assert_eq!(unwritable(&batch), 1);
        let lines = render("NS", &batch);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("\"g\"") && !lines[0].contains("\"h\""),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn validation_refuses_what_the_specification_forbids() {
        let ok = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["A"]],"Metrics":[{"Name":"m"}]}]},"A":"x","m":1}"#;
        assert_eq!(validate(ok), Ok(()));
        let bad = [
            ok.replace("\"A\":\"x\",", ""),
            ok.replace("\"m\":1", "\"m\":\"1\""),
            ok.replace("\"Timestamp\":1", "\"Timestamp\":\"1\""),
            ok.replace("{\"Name\":\"m\"}", "{\"Name\":\"m\",\"Unit\":\"Parsecs\"}"),
            ok.replace("\"m\":1", &format!("\"m\":{:?}", vec![1.0; 101])),
        ];
        for b in bad {
            assert!(validate(&b).is_err(), "{b}");
        }
    }
}
