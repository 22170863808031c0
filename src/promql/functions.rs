//! PromQL functions, each as Prometheus 2.42 computes it (`promql/functions.go`).

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::value::{EvalError, Evaluator, Range, Sample, Value, offset_ms};
use crate::store::Labels;

/// The arithmetic mean, computed incrementally as Prometheus does (it keeps large
/// values from overflowing the sum).
pub(crate) fn mean(values: &[f64]) -> f64 {
    let mut mean: f64 = 0.0;
    let mut count = 0.0;
    for &v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    if values.is_empty() { f64::NAN } else { mean }
}

/// The population variance (Welford's method, as Prometheus).
pub(crate) fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// The φ-quantile of `values`, interpolating between ranks as Prometheus does.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// A value as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it, which is also
/// the Prometheus text format's spelling (`NaN`, `+Inf`, `-Inf`).
pub(crate) fn format_value(v: f64) -> String {
    match crate::float::non_finite_text(v) {
        Some(text) => text.into(),
        None => format!("{v}"),
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr, EvalError> {
    c.args
        .args
        .get(i)
        .map(|b| &**b)
        .ok_or_else(|| EvalError(format!("{} needs argument {}", c.func.name, i + 1)))
}

fn matrix_arg(
    ctx: &dyn Evaluator,
    c: &Call,
    i: usize,
) -> Result<(Vec<Range>, i64, i64), EvalError> {
    match arg(c, i)? {
        Expr::MatrixSelector(m) => {
            let range = m.range.as_millis() as i64;
            let offset = offset_ms(&m.vs.offset);
            Ok((ctx.range(&m.vs, range), range, ctx.ts() - offset))
        }
        _ => Err(EvalError(format!(
            "{} needs a range vector selector",
            c.func.name
        ))),
    }
}

/// Applies `f` to each series of a range argument; the metric name is dropped.
fn over_time(
    ctx: &dyn Evaluator,
    c: &Call,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> Result<Value, EvalError> {
    let (matrix, _, _) = matrix_arg(ctx, c, 0)?;
    let keep_name = c.func.name == "last_over_time";
    Ok(Value::Vector(
        matrix
            .into_iter()
            .filter_map(|r| {
                let value = f(&r.points)?;
                let labels = if keep_name { r.labels } else { r.plain };
                Some(Sample { labels, value })
            })
            .collect(),
    ))
}

/// `rate`, `increase`, `delta`: the increase over the range, extrapolated to the
/// range's edges exactly as Prometheus 2.x does (`extrapolatedRate`).
fn extrapolated(
    ctx: &dyn Evaluator,
    c: &Call,
    counter: bool,
    rate: bool,
) -> Result<Value, EvalError> {
    let (matrix, range, end) = matrix_arg(ctx, c, 0)?;
    let start = end - range;
    let mut out = Vec::new();
    for r in matrix {
        let p = &r.points;
        if p.len() < 2 {
            continue;
        }
        let (first, last) = (p[0], p[p.len() - 1]);
        let mut result = last.1 - first.1;
        if counter {
            let mut prev = 0.0;
            for &(_, v) in p {
                if v < prev {
                    result += prev;
                }
                prev = v;
            }
        }
        let mut to_start = (first.0 - start) as f64 / 1000.0;
        let to_end = (end - last.0) as f64 / 1000.0;
        let sampled = (last.0 - first.0) as f64 / 1000.0;
        let average = sampled / (p.len() - 1) as f64;
        if counter && result > 0.0 && first.1 >= 0.0 {
            let to_zero = sampled * (first.1 / result);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        let threshold = average * 1.1;
        let mut interval = sampled;
        interval += if to_start < threshold {
            to_start
        } else {
            average / 2.0
        };
        interval += if to_end < threshold {
            to_end
        } else {
            average / 2.0
        };
        // One factor, then one multiplication: the order Prometheus 2.40+ uses, which
        // decides the last bit of the result.
        let mut factor = interval / sampled;
        if rate {
            factor /= range as f64 / 1000.0;
        }
        result *= factor;
        out.push(Sample {
            labels: r.plain,
            value: result,
        });
    }
    Ok(Value::Vector(out))
}

/// `irate` and `idelta`: from the last two samples.
fn instant_delta(ctx: &dyn Evaluator, c: &Call, rate: bool) -> Result<Value, EvalError> {
    over_time(ctx, c, |p| {
        if p.len() < 2 {
            return None;
        }
        let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
        let mut v = if rate && last.1 < prev.1 {
            last.1
        } else {
            last.1 - prev.1
        };
        if rate {
            let dt = (last.0 - prev.0) as f64 / 1000.0;
            if dt == 0.0 {
                return None;
            }
            v /= dt;
        }
        Some(v)
    })
}

/// Least-squares slope, with times relative to `intercept_time` (Prometheus's
/// `linearRegression`).
fn slope(p: &[(i64, f64)], intercept_time: i64) -> f64 {
    let init = p[0].1;
    if p.iter().all(|&(_, v)| v == init) {
        return if init.is_infinite() { f64::NAN } else { 0.0 };
    }
    let (mut n, mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in p {
        let x = (t - intercept_time) as f64 / 1000.0;
        n += 1.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sx2 += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    cov / var
}

/// One bucket of a classic histogram.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// Prometheus's `bucketQuantile` for classic histograms.
fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with the same upper bound, then force monotonic counts.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(b),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.count > max {
            max = b.count;
        } else {
            b.count = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.count < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].upper;
    }
    if b == 0 && merged[0].upper <= 0.0 {
        return merged[0].upper;
    }
    let (mut start, end, mut count) = (0.0, merged[b].upper, merged[b].count);
    if b > 0 {
        start = merged[b - 1].upper;
        count -= merged[b - 1].count;
        rank -= merged[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

fn histogram_quantile(ctx: &dyn Evaluator, c: &Call) -> Result<Value, EvalError> {
    let q = ctx.scalar(arg(c, 0)?)?;
    let input = ctx.vector(arg(c, 1)?)?;
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: std::collections::HashMap<Labels, Vec<Bucket>> =
        std::collections::HashMap::default();
    for s in input {
        let Ok(upper) = parse_le(s.labels.get("le")) else {
            continue;
        };
        let key = s
            .labels
            .without(|k| k == "le" || k == crate::store::labels::NAME);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(Bucket {
                upper,
                count: s.value,
            });
    }
    Ok(Value::Vector(
        order
            .into_iter()
            .map(|key| {
                let buckets = groups.remove(&key).unwrap_or_default();
                Sample {
                    value: bucket_quantile(q, buckets),
                    labels: key,
                }
            })
            .collect(),
    ))
}

fn parse_le(s: &str) -> Result<f64, ()> {
    crate::float::parse(s).ok_or(())
}

/// Applies `f` to each sample of a vector argument; the metric name is dropped.
fn map_vector(ctx: &dyn Evaluator, c: &Call, f: impl Fn(f64) -> f64) -> Result<Value, EvalError> {
    let v = ctx.vector(arg(c, 0)?)?;
    Ok(Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: s.labels.without_name(),
                value: f(s.value),
            })
            .collect(),
    ))
}

/// Labels for `absent`: the equality matchers of a selector argument.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(v) => v,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::default(),
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut dup: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == crate::store::labels::NAME || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        if pairs.iter().any(|(k, _)| *k == m.name) {
            dup.push(&m.name);
        }
        pairs.push((&m.name, &m.value));
    }
    // A label matched twice with `=` is left out, as Prometheus does.
    Labels::new(pairs.into_iter().filter(|(k, _)| !dup.contains(k)))
}

/// `absent` and `absent_over_time`: one sample of 1 when the argument selected
/// nothing, labelled by its equality matchers.
fn absent(empty: bool, selector: &Expr) -> Result<Value, EvalError> {
    Ok(Value::Vector(if empty {
        vec![Sample {
            labels: absent_labels(selector),
            value: 1.0,
        }]
    } else {
        Vec::new()
    }))
}

/// Evaluates a function call.
pub fn call(ctx: &dyn Evaluator, c: &Call) -> Result<Value, EvalError> {
    let name = c.func.name;
    match name {
        "rate" => extrapolated(ctx, c, true, true),
        "increase" => extrapolated(ctx, c, true, false),
        "delta" => extrapolated(ctx, c, false, false),
        "irate" => instant_delta(ctx, c, true),
        "idelta" => instant_delta(ctx, c, false),
        "deriv" => {
            let (_, _, _) = matrix_arg(ctx, c, 0)?;
            over_time(ctx, c, |p| (p.len() >= 2).then(|| slope(p, p[0].0)))
        }
        "changes" => over_time(ctx, c, |p| {
            Some(
                p.windows(2)
                    .filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
                    .count() as f64,
            )
        }),
        "resets" => over_time(ctx, c, |p| {
            Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "avg_over_time" => over_time(ctx, c, |p| {
            Some(mean(&p.iter().map(|x| x.1).collect::<Vec<_>>()))
        }),
        "sum_over_time" => over_time(ctx, c, |p| Some(p.iter().map(|x| x.1).sum())),
        "count_over_time" => over_time(ctx, c, |p| Some(p.len() as f64)),
        "min_over_time" => over_time(ctx, c, |p| {
            Some(
                p.iter()
                    .map(|x| x.1)
                    .fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
            )
        }),
        "max_over_time" => over_time(ctx, c, |p| {
            Some(
                p.iter()
                    .map(|x| x.1)
                    .fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
            )
        }),
        "last_over_time" => over_time(ctx, c, |p| p.last().map(|x| x.1)),
        "present_over_time" => over_time(ctx, c, |_| Some(1.0)),
        "stddev_over_time" => over_time(ctx, c, |p| {
            Some(variance(&p.iter().map(|x| x.1).collect::<Vec<_>>()).sqrt())
        }),
        "stdvar_over_time" => over_time(ctx, c, |p| {
            Some(variance(&p.iter().map(|x| x.1).collect::<Vec<_>>()))
        }),
        "quantile_over_time" => {
            let q = ctx.scalar(arg(c, 0)?)?;
            let (matrix, _, _) = matrix_arg(ctx, c, 1)?;
            Ok(Value::Vector(
                matrix
                    .into_iter()
                    .map(|r| Sample {
                        value: quantile(q, r.points.iter().map(|x| x.1).collect()),
                        labels: r.plain,
                    })
                    .collect(),
            ))
        }
        "absent_over_time" => {
            let (matrix, _, _) = matrix_arg(ctx, c, 0)?;
            absent(matrix.is_empty(), arg(c, 0)?)
        }
        "absent" => {
            let v = ctx.vector(arg(c, 0)?)?;
            absent(v.is_empty(), arg(c, 0)?)
        }
        "histogram_quantile" => histogram_quantile(ctx, c),
        "abs" => map_vector(ctx, c, f64::abs),
        "ceil" => map_vector(ctx, c, f64::ceil),
        "floor" => map_vector(ctx, c, f64::floor),
        "exp" => map_vector(ctx, c, f64::exp),
        "ln" => map_vector(ctx, c, f64::ln),
        "log2" => map_vector(ctx, c, f64::log2),
        "log10" => map_vector(ctx, c, f64::log10),
        "sqrt" => map_vector(ctx, c, f64::sqrt),
        "sgn" => map_vector(ctx, c, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "round" => {
            let to = match c.args.args.get(1) {
                Some(e) => ctx.scalar(e)?,
                None => 1.0,
            };
            // Go's math.Floor(v*inverse+0.5)/inverse: halves round up.
            let inverse = 1.0 / to;
            map_vector(ctx, c, move |v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp_min" => {
            let min = ctx.scalar(arg(c, 1)?)?;
            map_vector(ctx, c, move |v| v.max(min))
        }
        "clamp_max" => {
            let max = ctx.scalar(arg(c, 1)?)?;
            map_vector(ctx, c, move |v| v.min(max))
        }
        "clamp" => {
            let min = ctx.scalar(arg(c, 1)?)?;
            let max = ctx.scalar(arg(c, 2)?)?;
            if max < min {
                return Ok(Value::Vector(Vec::new()));
            }
            map_vector(ctx, c, move |v| v.max(min).min(max))
        }
        "time" => Ok(Value::Scalar(ctx.ts() as f64 / 1000.0)),
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Labels::default(),
            value: ctx.scalar(arg(c, 0)?)?,
        }])),
        "scalar" => {
            let v = ctx.vector(arg(c, 0)?)?;
            Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "timestamp" => {
            let e = arg(c, 0)?;
            match e {
                Expr::VectorSelector(vs) => Ok(Value::Vector(
                    ctx.instant_timed(vs)
                        .into_iter()
                        .map(|(s, t)| Sample {
                            labels: s.labels.without_name(),
                            value: t as f64 / 1000.0,
                        })
                        .collect(),
                )),
                _ => map_vector(ctx, c, |_| ctx.ts() as f64 / 1000.0),
            }
        }
        "label_replace" => {
            let v = ctx.vector(arg(c, 0)?)?;
            let text = |i| match ctx.eval(arg(c, i)?)? {
                Value::String(s) => Ok(s),
                _ => Err(EvalError("label_replace needs string arguments".into())),
            };
            let (dst, replacement, src, regex) = (text(1)?, text(2)?, text(3)?, text(4)?);
            let re = regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
                EvalError(format!(
                    "invalid regular expression in label_replace(): {regex}: {e}"
                ))
            })?;
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let value = s.labels.get(&src).to_string();
                let labels = match re.captures(&value) {
                    Some(caps) => {
                        let mut res = String::new();
                        caps.expand(&go_template(&replacement), &mut res);
                        s.labels.with(&dst, &res)
                    }
                    None => s.labels,
                };
                out.push(Sample {
                    labels,
                    value: s.value,
                });
            }
            Ok(Value::Vector(out))
        }
        other => Err(EvalError(format!("function {other} is not supported"))),
    }
}

/// Go's regexp replacement syntax (`$1`, `${name}`) is the same as the regex
/// crate's, except that Go reads `$1x` as the group named `1x`; the regex crate does
/// too, so the template passes through.
fn go_template(t: &str) -> String {
    t.to_string()
}
