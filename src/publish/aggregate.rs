//! From the series store to CloudWatch datums: what one interval of each configured
//! series becomes. Pure functions of the store's samples and the flush time.

use std::collections::BTreeMap;

use super::config::{BASELINE_LOOKBACK_MS, Fixed, MetricConfig, Stat};
use crate::store::{SeriesWindow, Store};

/// CloudWatch's limit on distinct values per datum (`Values`/`Counts`).
pub(crate) const MAX_DISTINCT_VALUES: usize = 150;
/// CloudWatch refuses magnitudes above this.
const MAX_MAGNITUDE: f64 = 1.174_271e108;
/// CloudWatch refuses non-zero magnitudes below this; they are sent as 0.
const MIN_MAGNITUDE: f64 = 8.515_920e-109;

/// The samples of `metrics` in `(from, to]`, each series with its baseline: what
/// the rule manager answers a snapshot request with (tests and benches stand in for
/// it with this).
pub fn snapshot(
    store: &Store,
    metrics: &[MetricConfig],
    from: i64,
    to: i64,
) -> Vec<Vec<SeriesWindow>> {
    metrics
        .iter()
        .map(|m| crate::promql::eval::windows(store, &m.selector, from, to, BASELINE_LOOKBACK_MS))
        .collect()
}

/// What a datum carries.
#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    /// One value.
    Single(f64),
    /// A statistic set.
    Stats {
        /// SampleCount.
        count: f64,
        /// Sum.
        sum: f64,
        /// Minimum.
        min: f64,
        /// Maximum.
        max: f64,
    },
    /// A distribution: distinct values and how often each was seen (at most
    /// [`MAX_DISTINCT_VALUES`]).
    Distribution {
        /// The values, ascending.
        values: Vec<f64>,
        /// Their counts.
        counts: Vec<f64>,
    },
}

/// One metric datum, independent of the SDK.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// The metric's name.
    pub name: String,
    /// Dimensions, in configured order.
    pub dimensions: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: DatumValue,
    /// CloudWatch unit, if any.
    pub unit: Option<String>,
    /// `StorageResolution = 1`.
    pub high_resolution: bool,
}

impl Datum {
    /// An upper bound of the datum's size in a PutMetricData body in any of the
    /// protocols (JSON being the largest): member names, strings and 24 characters
    /// per number.
    pub fn size_bound(&self) -> usize {
        let dims: usize = self
            .dimensions
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum();
        let value = match &self.value {
            DatumValue::Single(_) => 32,
            DatumValue::Stats { .. } => 128,
            DatumValue::Distribution { values, .. } => 32 + values.len() * 52,
        };
        160 + self.name.len() + dims + value + self.unit.as_ref().map_or(0, String::len)
    }
}

/// Where this Vigil runs: the values of the fixed dimensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// The config's environment.
    pub environment: String,
    /// The service's name.
    pub service: String,
    /// The ECS task id, or the host name.
    pub task_id: String,
    /// The ECS cluster, or `local`.
    pub cluster: String,
    /// The availability zone, or `local`.
    pub availability_zone: String,
    /// The task definition (`family:revision`), or `local`.
    pub task_definition: String,
}

impl Place {
    /// The value of a fixed dimension.
    pub fn value(&self, f: Fixed) -> &str {
        match f {
            Fixed::Environment => &self.environment,
            Fixed::Service => &self.service,
            Fixed::TaskId => &self.task_id,
            Fixed::Cluster => &self.cluster,
            Fixed::AvailabilityZone => &self.availability_zone,
            Fixed::TaskDefinition => &self.task_definition,
        }
    }

    /// The dimensions for `fixed`.
    pub fn dimensions(&self, fixed: &[Fixed]) -> Vec<(String, String)> {
        fixed
            .iter()
            .map(|f| (f.name().to_string(), self.value(*f).to_string()))
            .collect()
    }
}

/// A counter's increase across `points`, from `before` when known (else from the
/// first point), a drop counting as a reset to 0, as Prometheus's `increase`.
pub fn increase(before: Option<f64>, points: &[(i64, f64)]) -> f64 {
    let mut prev = match before {
        Some(b) => b,
        None => match points.first() {
            Some(&(_, v)) => v,
            None => return 0.0,
        },
    };
    let mut total = 0.0;
    for &(_, v) in points {
        total += if v >= prev { v - prev } else { v };
        prev = v;
    }
    total
}

/// Whether CloudWatch takes `v` (after [`clamp`]).
fn sendable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// Values too close to zero for CloudWatch become zero.
fn clamp(v: f64) -> f64 {
    if v != 0.0 && v.abs() < MIN_MAGNITUDE {
        0.0
    } else {
        v
    }
}

/// What one dimension set gathers over the window.
#[derive(Default)]
struct Acc {
    /// Values (last, summary, values).
    values: Vec<f64>,
    /// Sum of increases (increase).
    increase: f64,
    /// Bucket bound → cumulative increase (histogram).
    buckets: BTreeMap<OrderedBound, f64>,
}

/// A bucket's upper bound, ordered with `+Inf` last.
#[derive(Debug, Clone, Copy)]
struct OrderedBound(f64);
impl PartialEq for OrderedBound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrderedBound {}
impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The datums of one flush at `t`; values CloudWatch cannot take (NaN, ±Inf, beyond
/// its range) are left out and counted in `skipped`. With `expand` (EMF, which has
/// no statistic sets) summaries are sent as their values.
pub fn datums(
    metrics: &[MetricConfig],
    windows: Vec<Vec<SeriesWindow>>,
    place: &Place,
    t: i64,
    expand: bool,
    skipped: &mut u64,
) -> Vec<Datum> {
    let mut out = Vec::new();
    for (m, series) in metrics.iter().zip(windows) {
        let mut groups: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
        for s in series {
            let key: Vec<String> = m
                .labels
                .iter()
                .map(|l| dimension_value(s.labels.get(l)))
                .collect();
            let acc = groups.entry(key).or_default();
            let mut take = |v: f64, into: &mut Vec<f64>| {
                if sendable(v) {
                    into.push(clamp(v));
                } else {
                    *skipped += 1;
                }
            };
            match m.stat {
                Stat::Last => {
                    if let Some(&(_, v)) = s.points.last() {
                        take(v, &mut acc.values);
                    }
                }
                Stat::Summary | Stat::Values => {
                    for &(_, v) in &s.points {
                        take(v, &mut acc.values);
                    }
                }
                Stat::Increase => {
                    let inc = increase(s.before, &s.points);
                    if sendable(inc) {
                        acc.increase += inc;
                    } else {
                        *skipped += 1;
                    }
                }
                Stat::Histogram => {
                    // A bucket bound that is no number (or NaN) counts nothing.
                    let le = match crate::float::parse(s.labels.get("le")) {
                        Some(v) if !v.is_nan() => v,
                        _ => {
                            *skipped += 1;
                            continue;
                        }
                    };
                    let inc = increase(s.before, &s.points);
                    if !sendable(inc) {
                        *skipped += 1;
                        continue;
                    }
                    *acc.buckets.entry(OrderedBound(le)).or_default() += inc;
                }
            }
        }
        for (key, acc) in groups {
            let mut dimensions = place.dimensions(&m.fixed);
            dimensions.extend(m.labels.iter().cloned().zip(key));
            let datum = |value| Datum {
                name: m.name.clone(),
                dimensions: dimensions.clone(),
                timestamp_ms: t,
                value,
                unit: m.unit.clone(),
                high_resolution: m.high_resolution,
            };
            match m.stat {
                Stat::Last if acc.values.len() == 1 => {
                    out.push(datum(DatumValue::Single(acc.values[0])))
                }
                Stat::Last | Stat::Summary if expand => {
                    out.extend(distribution(counted(&acc.values)).into_iter().map(datum))
                }
                Stat::Last | Stat::Summary => {
                    if let Some(v) = stats(&acc.values) {
                        out.push(datum(v));
                    }
                }
                Stat::Values => {
                    out.extend(distribution(counted(&acc.values)).into_iter().map(datum))
                }
                Stat::Increase => out.push(datum(DatumValue::Single(clamp(acc.increase)))),
                // Without a finite bucket there is no value to count observations at.
                Stat::Histogram if !acc.buckets.keys().any(|b| b.0.is_finite()) => *skipped += 1,
                Stat::Histogram => out.extend(
                    distribution(histogram_counts(&acc.buckets))
                        .into_iter()
                        .map(datum),
                ),
            }
        }
    }
    out
}

/// A label value as CloudWatch takes a dimension value: ASCII without control
/// characters (others become `_`), at least one non-blank character (else `none`), at
/// most 1 024 characters.
pub(crate) fn dimension_value(label: &str) -> String {
    let clean: String = label
        .chars()
        .take(1024)
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim().is_empty() {
        "none".to_string()
    } else {
        clean
    }
}

/// Count, sum, minimum and maximum of `values`; `None` when empty.
fn stats(values: &[f64]) -> Option<DatumValue> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    if !sendable(sum) {
        return None;
    }
    Some(DatumValue::Stats {
        count: values.len() as f64,
        sum: clamp(sum),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Distinct values (ascending) with their counts.
fn counted(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut out: Vec<(f64, f64)> = Vec::new();
    for v in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == v => *n += 1.0,
            _ => out.push((v, 1.0)),
        }
    }
    out
}

/// A histogram's buckets as distinct values with counts: each bucket's observations
/// at its upper bound (the `+Inf` bucket's at the highest finite bound, as
/// `histogram_quantile` does), so the count is exact and a percentile is never below
/// the true one except for observations above the highest finite bound.
fn histogram_counts(buckets: &BTreeMap<OrderedBound, f64>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut below = 0.0;
    let mut highest_finite = 0.0;
    for (&OrderedBound(le), &cumulative) in buckets {
        let n = (cumulative - below).max(0.0);
        below = below.max(cumulative);
        let at = if le.is_finite() {
            highest_finite = le;
            le
        } else {
            highest_finite
        };
        if n > 0.0 && n.is_finite() && sendable(at) {
            match out.last_mut() {
                Some((v, c)) if *v == at => *c += n,
                _ => out.push((clamp(at), n)),
            }
        }
    }
    out
}

/// `Values`/`Counts` datums of at most [`MAX_DISTINCT_VALUES`] each; none when
/// nothing was counted.
fn distribution(pairs: Vec<(f64, f64)>) -> Vec<DatumValue> {
    pairs
        .chunks(MAX_DISTINCT_VALUES)
        .map(|chunk| DatumValue::Distribution {
            values: chunk.iter().map(|p| p.0).collect(),
            counts: chunk.iter().map(|p| p.1).collect(),
        })
        .collect()
}

/// How many datums from the head of `datums` fit one call of at most `max_datums`
/// and `max_bytes` (by [`Datum::size_bound`]); at least one when any is there.
pub(crate) fn batch_len<'a>(
    datums: impl IntoIterator<Item = &'a Datum>,
    max_datums: usize,
    max_bytes: usize,
) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for d in datums {
        let size = d.size_bound();
        if n == max_datums || (n > 0 && bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Collector;
    use crate::store::Labels;

    fn metric(series: &str, stat: &str, labels: &[&str]) -> MetricConfig {
        let yaml = format!(
            "cloudwatch:\n  metrics:\n    - series: '{series}'\n      stat: {stat}\n      labels: [{}]\n",
            labels.join(", ")
        );
        let settings: super::super::config::PublishSettings =
            serde_saphyr::from_str(&yaml).expect("valid yaml");
        let mut c = Collector::new(std::path::Path::new("t.yaml"));
        let cw = settings
            .validate(&mut c, crate::store::DEFAULT_RETENTION)
            .expect("valid settings");
        cw.metrics.into_iter().next().expect("one metric")
    }

    fn place() -> Place {
        Place {
            environment: "test".into(),
            service: "svc".into(),
            ..Place::default()
        }
    }

    /// A series as the tests write it: name, labels, samples.
    type Rows<'a> = &'a [(&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)])];

    fn store_with(series: Rows<'_>) -> Store {
        let mut s = Store::new(1000, 3_600_000);
        for (name, labels, points) in series {
            let l = Labels::from_pairs(name, labels);
            for &(t, v) in *points {
                s.append(&l, t, v).expect("append");
            }
        }
        s
    }

    fn flush(store: &Store, m: &MetricConfig, from: i64, to: i64) -> (Vec<Datum>, u64) {
        let mut skipped = 0;
        let w = snapshot(store, std::slice::from_ref(m), from, to);
        let d = datums(
            std::slice::from_ref(m),
            w,
            &place(),
            to,
            false,
            &mut skipped,
        );
        (d, skipped)
    }

    #[test]
    fn summaries_are_exact_and_skip_what_cloudwatch_refuses() {
        let store = store_with(&[
            (
                "lat",
                &[("probe", "a")],
                &[
                    (500, 9.0),
                    (1_000, 1.0),
                    (2_000, 3.0),
                    (3_000, f64::NAN),
                    (4_000, 2.0),
                ],
            ),
            (
                "lat",
                &[("probe", "b")],
                &[(1_000, 10.0), (2_000, f64::INFINITY)],
            ),
        ]);
        let (d, skipped) = flush(&store, &metric("lat", "summary", &["probe"]), 500, 4_000);
        assert_eq!(skipped, 2);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].dimensions,
            vec![
                ("Environment".into(), "test".into()),
                ("Service".into(), "svc".into()),
                ("probe".into(), "a".into()),
            ]
        );
        assert_eq!(
            d[0].value,
            DatumValue::Stats {
                count: 3.0,
                sum: 6.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(
            d[1].value,
            DatumValue::Stats {
                count: 1.0,
                sum: 10.0,
                min: 10.0,
                max: 10.0
            }
        );
        assert_eq!(d[0].timestamp_ms, 4_000);
        // Without the label, both series share one datum.
        let (d, _) = flush(&store, &metric("lat", "summary", &[]), 500, 4_000);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].value,
            DatumValue::Stats {
                count: 4.0,
                sum: 16.0,
                min: 1.0,
                max: 10.0
            }
        );
    }

    #[test]
    fn last_sends_the_newest_value_and_a_set_when_series_merge() {
        let store = store_with(&[
            ("g", &[("x", "1")], &[(1_000, 5.0), (2_000, 7.0)]),
            ("g", &[("x", "2")], &[(1_000, 1.0)]),
        ]);
        let (d, _) = flush(&store, &metric("g", "last", &["x"]), 0, 2_000);
        assert_eq!(d[0].value, DatumValue::Single(7.0));
        assert_eq!(d[1].value, DatumValue::Single(1.0));
        let (d, _) = flush(&store, &metric("g", "last", &[]), 0, 2_000);
        assert_eq!(
            d[0].value,
            DatumValue::Stats {
                count: 2.0,
                sum: 8.0,
                min: 1.0,
                max: 7.0
            }
        );
        // Nothing in the window: no datum.
        let (d, _) = flush(&store, &metric("g", "last", &[]), 2_000, 3_000);
        assert!(d.is_empty());
    }

    #[test]
    fn increase_uses_the_previous_window_and_survives_resets() {
        assert_eq!(increase(Some(10.0), &[(1, 12.0), (2, 15.0)]), 5.0);
        assert_eq!(increase(None, &[(1, 12.0), (2, 15.0)]), 3.0);
        assert_eq!(increase(Some(10.0), &[(1, 12.0), (2, 3.0), (3, 4.0)]), 6.0);
        let store = store_with(&[
            (
                "c_total",
                &[("s", "200")],
                &[(1_000, 10.0), (61_000, 15.0), (62_000, 20.0)],
            ),
            ("c_total", &[("s", "500")], &[(1_000, 1.0), (61_000, 2.0)]),
        ]);
        let m = metric("c_total", "increase", &[]);
        assert_eq!(m.name, "c", "the default name drops _total");
        let (d, _) = flush(&store, &m, 60_000, 120_000);
        assert_eq!(d[0].value, DatumValue::Single(11.0));
    }

    #[test]
    fn values_are_counted_and_split_at_150_distinct() {
        let points: Vec<(i64, f64)> = (1..=400).map(|i| (i, (i % 200) as f64)).collect();
        let store = store_with(&[("d", &[], &points)]);
        let (d, _) = flush(&store, &metric("d", "values", &[]), 0, 1_000);
        assert_eq!(d.len(), 2, "200 distinct values: 150 + 50");
        let mut total = 0.0;
        let mut sum = 0.0;
        for x in &d {
            let DatumValue::Distribution { values, counts } = &x.value else {
                panic!("{x:?}")
            };
            assert!(values.len() <= MAX_DISTINCT_VALUES);
            assert!(values.windows(2).all(|w| w[0] < w[1]));
            total += counts.iter().sum::<f64>();
            sum += values.iter().zip(counts).map(|(v, c)| v * c).sum::<f64>();
        }
        assert_eq!(total, 400.0);
        assert_eq!(sum, points.iter().map(|p| p.1).sum::<f64>());
    }

    #[test]
    fn histograms_become_bucket_counts_at_their_upper_bounds() {
        let b = |le: &'static str, before: f64, after: f64| {
            (
                "h_bucket",
                vec![("le", le), ("route", "/x")],
                vec![(1_000, before), (61_000, after)],
            )
        };
        let rows = [
            b("0.1", 5.0, 8.0),
            b("0.5", 6.0, 12.0),
            b("2", 6.0, 13.0),
            b("+Inf", 6.0, 15.0),
        ];
        let mut store = Store::new(100, 3_600_000);
        for (name, labels, points) in &rows {
            let l = Labels::from_pairs(name, labels);
            for &(t, v) in points {
                store.append(&l, t, v).expect("append");
            }
        }
        let m = metric("h", "histogram", &[]);
        assert_eq!(m.selector.name.as_deref(), Some("h_bucket"));
        let (d, _) = flush(&store, &m, 60_000, 120_000);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].value,
            DatumValue::Distribution {
                values: vec![0.1, 0.5, 2.0],
                counts: vec![3.0, 3.0, 3.0]
            },
            "the +Inf bucket's 2 observations count at 2 s with the 2 s bucket's 1"
        );
    }

    #[test]
    fn windows_survive_a_clock_step_back_and_stale_baselines() {
        let store = store_with(&[(
            "c_total",
            &[],
            &[
                (10_000, 100.0),
                (15_000, crate::store::stale_nan()),
                (30_000, 130.0),
                (45_000, 140.0),
            ],
        )]);
        let m = metric("c_total", "increase", &[]);
        // The baseline is the value before the failed scrape, not the window's first.
        let (d, _) = flush(&store, &m, 20_000, 80_000);
        assert_eq!(d[0].value, DatumValue::Single(40.0));
        // The clock went back: no window, no panic.
        let (d, _) = flush(&store, &m, 40_000, 20_000);
        assert!(d.is_empty());
    }

    #[test]
    fn label_values_become_valid_dimension_values() {
        assert_eq!(dimension_value("/watch/café"), "/watch/caf_");
        assert_eq!(dimension_value("a\tb"), "a_b");
        assert_eq!(dimension_value(" "), "none");
        assert_eq!(dimension_value(""), "none");
        assert_eq!(dimension_value(&"x".repeat(2_000)).len(), 1_024);
    }

    #[test]
    fn infinite_bucket_counts_and_bucketless_histograms_are_skipped() {
        let mut store = Store::new(100, 3_600_000);
        for (le, v) in [("1", f64::INFINITY), ("+Inf", 5.0)] {
            let l = Labels::from_pairs("h_bucket", &[("le", le)]);
            store.append(&l, 10_000, 1.0).unwrap();
            store.append(&l, 30_000, v).unwrap();
        }
        let l = Labels::from_pairs("g_bucket", &[("le", "+Inf")]);
        store.append(&l, 10_000, 1.0).unwrap();
        store.append(&l, 30_000, 3.0).unwrap();
        // The infinite bucket is skipped; what is left has no finite bucket: skipped.
        let (d, skipped) = flush(&store, &metric("h", "histogram", &[]), 0, 60_000);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(skipped, 2);
        let (d, skipped) = flush(&store, &metric("g", "histogram", &[]), 0, 60_000);
        assert!(d.is_empty());
        assert_eq!(skipped, 1);
    }

    #[test]
    fn batches_respect_both_limits() {
        let d = Datum {
            name: "m".into(),
            dimensions: vec![],
            timestamp_ms: 0,
            value: DatumValue::Single(1.0),
            unit: None,
            high_resolution: false,
        };
        let calls = |datums: &[Datum], max_datums, max_bytes| {
            let mut out = Vec::new();
            let mut rest = datums;
            while !rest.is_empty() {
                let n = batch_len(rest, max_datums, max_bytes);
                out.push(n);
                rest = &rest[n..];
            }
            out
        };
        let many = vec![d.clone(); 2_500];
        assert_eq!(calls(&many, 1_000, 1_000_000), vec![1_000, 1_000, 500]);
        let size = d.size_bound();
        assert_eq!(calls(&many[..10], 1_000, size * 3), vec![3, 3, 3, 1]);
        assert_eq!(batch_len(&many, 1_000, 1), 1, "one datum always goes");
        assert_eq!(batch_len(&[], 1_000, 1_000), 0);
    }
}
