//! `publish:` as written in the config, and its validation against CloudWatch's rules.

use std::time::Duration;

use promql_parser::parser::{Expr, VectorSelector};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::settings::Collector;
use crate::settings::duration::{self, Zero};

/// How far before a window a counter's baseline is looked for (Prometheus's
/// lookback): a scrape that failed just before the window leaves a stale marker, and
/// the value before it is still the right baseline.
pub(crate) const BASELINE_LOOKBACK_MS: i64 = 300_000;

/// Namespace when the config names none.
pub(crate) const DEFAULT_NAMESPACE: &str = "PlexWatchTogether";
/// Publishing interval when the config sets none.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The `Service` dimension's value when the config sets none.
pub(crate) const DEFAULT_SERVICE: &str = "watch-together";
/// Datums kept while CloudWatch is unreachable, when the config sets no limit: ten
/// minutes of 10 000 series at the default interval.
pub(crate) const DEFAULT_MAX_QUEUED: usize = 100_000;
/// CloudWatch's limit on dimensions per metric.
pub(crate) const MAX_DIMENSIONS: usize = 30;

/// CloudWatch's units (`StandardUnit`).
pub(crate) const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// `publish:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    /// CloudWatch publishing; absent means nothing is published.
    #[serde(default)]
    cloudwatch: Option<CloudWatchSettings>,
}

/// `publish.cloudwatch:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudWatchSettings {
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    service: Option<Spanned<String>>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    #[serde(default)]
    dimensions: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    max_queued: Option<Spanned<u64>>,
    #[serde(default)]
    metrics: Vec<MetricSettings>,
}

/// One entry of `metrics:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSettings {
    series: Spanned<String>,
    #[serde(default)]
    name: Option<Spanned<String>>,
    stat: Spanned<String>,
    #[serde(default)]
    unit: Option<Spanned<String>>,
    #[serde(default)]
    labels: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    dimensions: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    high_resolution: Option<bool>,
}

/// Where datums go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// PutMetricData calls.
    Api,
    /// Embedded Metric Format lines on stdout, for the awslogs driver.
    Emf,
}

/// What is sent of a series over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// The newest sample of each series (a gauge's current value).
    Last,
    /// Every sample as a statistic set: count, sum, minimum, maximum.
    Summary,
    /// Every sample as a distribution (`Values`/`Counts`), for percentiles.
    Values,
    /// A counter's increase over the interval, resets handled.
    Increase,
    /// A Prometheus histogram's buckets' increase, as a distribution.
    Histogram,
}

impl Stat {
    fn parse(text: &str) -> Option<Stat> {
        Some(match text {
            "last" => Stat::Last,
            "summary" => Stat::Summary,
            "values" => Stat::Values,
            "increase" => Stat::Increase,
            "histogram" => Stat::Histogram,
            _ => return None,
        })
    }
}

/// A dimension whose value comes from where Vigil runs, not from a series' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fixed {
    /// The config's `environment`.
    Environment,
    /// `publish.cloudwatch.service`.
    Service,
    /// The ECS task's id (the host name off ECS).
    TaskId,
    /// The ECS cluster's name (`local` off ECS).
    Cluster,
    /// The task's availability zone (`local` off ECS).
    AvailabilityZone,
    /// The task's definition, `family:revision` (`local` off ECS): what one
    /// deployment runs, so `scripts/deploy.sh` reads one deployment's verdict.
    TaskDefinition,
}

impl Fixed {
    /// Every fixed dimension, by name.
    pub const ALL: [(&'static str, Fixed); 6] = [
        ("Environment", Fixed::Environment),
        ("Service", Fixed::Service),
        ("TaskId", Fixed::TaskId),
        ("Cluster", Fixed::Cluster),
        ("AvailabilityZone", Fixed::AvailabilityZone),
        ("TaskDefinition", Fixed::TaskDefinition),
    ];

    /// The dimension's name.
    pub fn name(self) -> &'static str {
        Fixed::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every variant is listed")
    }
}

/// One validated metric to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    /// The selector as written (for messages and `/status`).
    pub series: String,
    /// The selector; for `histogram` it selects the `_bucket` series.
    pub selector: VectorSelector,
    /// The CloudWatch metric name.
    pub name: String,
    /// What is sent.
    pub stat: Stat,
    /// The CloudWatch unit, if any.
    pub unit: Option<String>,
    /// Fixed dimensions, in order.
    pub fixed: Vec<Fixed>,
    /// Series labels that become dimensions (named as the label).
    pub labels: Vec<String>,
    /// `StorageResolution = 1`.
    pub high_resolution: bool,
}

impl MetricConfig {
    /// The dimension names of this metric's datums, in order.
    pub fn dimension_names(&self) -> Vec<String> {
        self.fixed
            .iter()
            .map(|f| f.name().to_string())
            .chain(self.labels.iter().cloned())
            .collect()
    }
}

/// Validated `publish.cloudwatch`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchConfig {
    /// API or EMF.
    pub mode: Mode,
    /// The namespace.
    pub namespace: String,
    /// Time between two flushes.
    pub interval: Duration,
    /// The `Service` dimension's value.
    pub service: String,
    /// The region (else the SDK's: `AWS_REGION`, the profile, the task's).
    pub region: Option<String>,
    /// The fixed dimensions of `vigil_heartbeat` and of metrics that set none.
    pub dimensions: Vec<Fixed>,
    /// Most datums kept waiting; past it the oldest are dropped and counted.
    pub max_queued: usize,
    /// What to publish.
    pub metrics: Vec<MetricConfig>,
}

/// CloudWatch's rule for names and dimension values: ASCII, no control characters,
/// not blank, not starting with `:`, at most `max` long.
fn valid_cloudwatch_name(s: &str, max: usize) -> bool {
    !s.trim().is_empty()
        && s.len() <= max
        && s.is_ascii()
        && !s.chars().any(|c| c.is_ascii_control())
        && !s.starts_with(':')
}

fn fixed_dimensions(v: &Spanned<Vec<String>>, c: &mut Collector) -> Vec<Fixed> {
    let mut out = Vec::new();
    for d in &v.value {
        match Fixed::ALL.iter().find(|(n, _)| n == d) {
            Some((_, f)) if !out.contains(f) => out.push(*f),
            Some(_) => c.at(v.referenced, format!("dimension {d} is listed twice")),
            None => c.at(
                v.referenced,
                format!(
                    "unknown dimension {d:?}: use Environment, Service, TaskId, Cluster or AvailabilityZone (series labels go under labels:)"
                ),
            ),
        }
    }
    out
}

/// The selector of `text`, which must be a plain vector selector.
fn selector(text: &Spanned<String>, c: &mut Collector) -> Option<VectorSelector> {
    match crate::promql::parse(&text.value) {
        Ok(Expr::VectorSelector(v)) if v.name.is_some() && v.offset.is_none() && v.at.is_none() => {
            Some(v)
        }
        Ok(_) => {
            c.at(
                text.referenced,
                format!(
                    "series {:?} must be a metric name with optional matchers, like 'http_requests_total{{job=\"app\"}}'",
                    text.value
                ),
            );
            None
        }
        Err(e) => {
            c.at(
                text.referenced,
                format!("series {:?}: {}", text.value, e.message),
            );
            None
        }
    }
}

impl PublishSettings {
    /// Checks everything against CloudWatch's limits, and the interval against the
    /// store's `retention` (a flush reads the interval and the five minutes before
    /// it); `None` when nothing is published or something is wrong (the problems are
    /// in `c`).
    pub fn validate(self, c: &mut Collector, retention: Duration) -> Option<CloudWatchConfig> {
        let cw = self.cloudwatch?;
        let before = c.len();
        let mode = match cw.mode.as_ref().map(|m| m.value.as_str()) {
            None | Some("api") => Mode::Api,
            Some("emf") => Mode::Emf,
            Some(other) => {
                let m = cw.mode.as_ref().expect("matched Some");
                c.at(
                    m.referenced,
                    format!("unknown mode {other:?}: use api or emf"),
                );
                Mode::Api
            }
        };
        let namespace = match &cw.namespace {
            None => DEFAULT_NAMESPACE.to_string(),
            Some(n) => {
                let ok = valid_cloudwatch_name(&n.value, 255)
                    && n.value
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ".-_/#:".contains(ch))
                    && !n.value.starts_with("AWS/");
                if !ok {
                    c.at(
                        n.referenced,
                        format!(
                            "invalid namespace {:?}: 1 to 255 of A-Z a-z 0-9 . - _ / # :, not starting with AWS/",
                            n.value
                        ),
                    );
                }
                n.value.clone()
            }
        };
        let lookback = Duration::from_millis(BASELINE_LOOKBACK_MS as u64);
        let interval = match (
            duration::at(cw.interval.as_ref(), Zero::Refused, c),
            &cw.interval,
        ) {
            (Some(d), Some(i)) if d + lookback > retention => {
                c.at(
                    i.referenced,
                    format!(
                        "interval {} needs the store to keep {} of samples (the interval and the {} before it); raise store.retention",
                        duration::format(d),
                        duration::format(d + lookback),
                        duration::format(lookback)
                    ),
                );
                DEFAULT_INTERVAL
            }
            (Some(d), _) if d >= Duration::from_secs(1) && d.subsec_nanos() == 0 => d,
            (Some(_), Some(i)) => {
                c.at(i.referenced, "interval must be whole seconds, at least 1s");
                DEFAULT_INTERVAL
            }
            _ => DEFAULT_INTERVAL,
        };
        let service = match &cw.service {
            None => DEFAULT_SERVICE.to_string(),
            Some(s) if valid_cloudwatch_name(&s.value, 1024) => s.value.clone(),
            Some(s) => {
                c.at(s.referenced, "service must be 1 to 1024 ASCII characters");
                String::new()
            }
        };
        let region = cw.region.as_ref().map(|r| r.value.clone());
        let dimensions = match &cw.dimensions {
            None => vec![Fixed::Environment, Fixed::Service],
            Some(d) => fixed_dimensions(d, c),
        };
        let max_queued = match &cw.max_queued {
            None => DEFAULT_MAX_QUEUED,
            Some(m) if m.value >= 1_000 => m.value as usize,
            Some(m) => {
                c.at(
                    m.referenced,
                    "max_queued must be at least 1000 (one PutMetricData call)",
                );
                DEFAULT_MAX_QUEUED
            }
        };
        let mut metrics: Vec<MetricConfig> = Vec::new();
        let mut seen: Vec<(String, Vec<String>, serde_saphyr::Location)> = Vec::new();
        for m in cw.metrics {
            let Some(mut sel) = selector(&m.series, c) else {
                continue;
            };
            let Some(stat) = Stat::parse(&m.stat.value) else {
                c.at(
                    m.stat.referenced,
                    format!(
                        "unknown stat {:?}: use last, summary, values, increase or histogram",
                        m.stat.value
                    ),
                );
                continue;
            };
            let base = sel.name.clone().unwrap_or_default();
            let name = m
                .name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_else(|| base.trim_end_matches("_total").to_string());
            // Problems of the name point at `name:`, or at `series:` it came from.
            let name_at = m
                .name
                .as_ref()
                .map(|n| n.referenced)
                .unwrap_or(m.series.referenced);
            if name == super::HEARTBEAT {
                c.at(name_at, format!("{name} is Vigil's own heartbeat, published every interval; pick another name"));
            }
            if !valid_cloudwatch_name(&name, 255) {
                c.at(name_at, format!("invalid metric name {name:?}: 1 to 255 ASCII characters, not starting with ':'"));
            }
            if stat == Stat::Histogram {
                if base.ends_with("_bucket") {
                    c.at(
                        m.series.referenced,
                        format!(
                            "stat histogram takes the histogram's name without _bucket: {:?}",
                            base.trim_end_matches("_bucket")
                        ),
                    );
                }
                sel.name = Some(format!("{base}_bucket"));
                sel.matchers
                    .matchers
                    .retain(|x| x.name != crate::store::labels::NAME);
            }
            let unit = match &m.unit {
                None => None,
                Some(u) if UNITS.contains(&u.value.as_str()) => Some(u.value.clone()),
                Some(u) => {
                    c.at(
                        u.referenced,
                        format!(
                            "unknown unit {:?}: use one of {}",
                            u.value,
                            UNITS.join(", ")
                        ),
                    );
                    None
                }
            };
            let fixed = match &m.dimensions {
                None => dimensions.clone(),
                Some(d) => fixed_dimensions(d, c),
            };
            let labels = m
                .labels
                .as_ref()
                .map(|l| l.value.clone())
                .unwrap_or_default();
            // In an EMF line the metric and its dimensions are members of one object.
            if name == "_aws" || fixed.iter().any(|f| f.name() == name) || labels.contains(&name) {
                c.at(
                    name_at,
                    format!(
                        "metric name {name:?} is taken by one of its dimensions or by EMF's _aws"
                    ),
                );
            }
            if let Some(l) = &m.labels {
                for (i, label) in l.value.iter().enumerate() {
                    if label == "_aws" || Fixed::ALL.iter().any(|(n, _)| n == label) {
                        c.at(
                            l.referenced,
                            format!(
                                "label {label:?} would clash with the dimension of that name; rename it with a recording rule"
                            ),
                        );
                    } else if label == "le" && stat == Stat::Histogram {
                        c.at(
                            l.referenced,
                            "le is the histogram's bucket bound, not a dimension",
                        );
                    } else if !valid_cloudwatch_name(label, 255)
                        || label == crate::store::labels::NAME
                    {
                        c.at(
                            l.referenced,
                            format!("label {label:?} cannot be a dimension"),
                        );
                    } else if l.value[..i].contains(label) {
                        c.at(l.referenced, format!("label {label} is listed twice"));
                    }
                }
                if fixed.len() + l.value.len() > MAX_DIMENSIONS {
                    c.at(
                        l.referenced,
                        format!(
                            "{} dimensions: CloudWatch takes at most {MAX_DIMENSIONS}",
                            fixed.len() + l.value.len()
                        ),
                    );
                }
            }
            let metric = MetricConfig {
                series: m.series.value.clone(),
                selector: sel,
                name,
                stat,
                unit,
                fixed,
                labels,
                high_resolution: m.high_resolution.unwrap_or(false),
            };
            let mut dims = metric.dimension_names();
            dims.sort();
            if let Some((_, _, at)) = seen
                .iter()
                .find(|(n, d, _)| *n == metric.name && *d == dims)
            {
                c.at(
                    m.series.referenced,
                    format!(
                        "metric {} with dimensions [{}] is already published by the entry at line {}; give one of them another name or other labels",
                        metric.name,
                        dims.join(", "),
                        at.line()
                    ),
                );
            }
            seen.push((metric.name.clone(), dims, m.series.referenced));
            metrics.push(metric);
        }
        (c.len() == before).then_some(CloudWatchConfig {
            mode,
            namespace,
            interval,
            service,
            region,
            dimensions,
            max_queued,
            metrics,
        })
    }
}
