//! PromQL functions, each as Prometheus 2.42 computes it (`promql/functions.go`).

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use chrono::{DateTime, Datelike, Timelike};

use super::value::{EvalError, Evaluator, Range, Sample, Value};
use crate::store::Labels;
use crate::store::labels::valid_label_name;

/// The arithmetic mean, computed incrementally as Prometheus does (it keeps large
/// values from overflowing the sum).
pub(crate) fn mean(values: &[f64]) -> f64 {
    let mut mean: f64 = 0.0;
    let mut count = 0.0;
    for &v in values {
        count += 1.0;
        if stays_infinite(mean, v) {
            continue;
        }
        mean += v / count - mean / count;
    }
    if values.is_empty() { f64::NAN } else { mean }
}

/// Whether adding `v` leaves an infinite running mean as it is: Prometheus skips a
/// finite value, or an infinity of the mean's sign, once the mean is infinite.
fn stays_infinite(mean: f64, v: f64) -> bool {
    mean.is_infinite() && (v.is_finite() || (v.is_infinite() && (mean > 0.0) == (v > 0.0)))
}

/// One step of Kahan–Neumaier summation (Prometheus's `kahanSumInc`): the new sum
/// and compensation.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `sum_over_time`: a compensated sum, as Prometheus 2.42.
fn kahan_sum(points: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &(_, v) in points {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// `avg_over_time`: the incremental mean with compensation, as Prometheus 2.42.
fn kahan_mean(points: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c): (f64, f64, f64) = (0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        if stays_infinite(mean, v) {
            continue;
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `stdvar_over_time`: Welford's method with compensated sums, as Prometheus 2.42
/// (the plain method differs in the last bits).
fn kahan_variance(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The population variance (Welford's method, as Prometheus's `stddev` and
/// `stdvar` aggregations).
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
    // NaN sorts first, as Prometheus's `vectorByValueHeap` (NaN is "less" than
    // anything), so the rank is taken among the other samples from the top.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
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
    ctx.matrix(arg(c, i)?)?.ok_or_else(|| {
        EvalError(format!(
            "{} needs a range vector (a selector with a range, or a subquery)",
            c.func.name
        ))
    })
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

/// Least-squares slope and intercept, with times in seconds relative to
/// `intercept_time` and compensated sums (Prometheus's `linearRegression`).
fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init = p[0].1;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let mut constant = true;
    for &(t, v) in p {
        constant &= v == init;
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if constant {
        return if init.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init)
        };
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// `holt_winters`: double exponential smoothing (Prometheus 2.42's code).
fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, p[0].1, p[1].1 - p[0].1);
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// A date part of Unix seconds `secs` in UTC, as Go's `time` package computes it.
fn date_part(secs: i64, part: &str) -> f64 {
    let Some(t) = DateTime::from_timestamp(secs, 0) else {
        return f64::NAN;
    };
    f64::from(match part {
        "minute" => t.minute(),
        "hour" => t.hour(),
        "day_of_week" => t.weekday().num_days_from_sunday(),
        "day_of_month" => t.day(),
        "day_of_year" => t.ordinal(),
        "month" => t.month(),
        "year" => return f64::from(t.year()),
        // days_in_month
        _ => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
            match (first, next) {
                (Some(a), Some(b)) => (b - a).num_days() as u32,
                _ => return f64::NAN,
            }
        }
    })
}

/// `log10` as Go's `math.Log10` defines it: the natural log times 1/ln 10, a
/// constant Go rounds once (`LOG10_E`), not libm's own `log10`.
fn go_log10(x: f64) -> f64 {
    x.ln() * std::f64::consts::LOG10_E
}

/// `log2` as Go's `math.Log2` defines it: exact for powers of two, else the natural
/// log of the mantissa times 1/ln 2 (`LOG2_E`) plus the exponent.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    frac.ln() * std::f64::consts::LOG2_E + f64::from(exp)
}

/// `x` as a mantissa in [0.5, 1) and a power of two (C's `frexp`); zero, infinities
/// and NaN come back as they are with exponent 0.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE {
        (x * (1u64 << 52) as f64, -52)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022 + bias;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// `sort` and `sort_desc`: by value, NaN last either way (Prometheus's heaps).
fn sort_by_value(mut v: Vec<Sample>, descending: bool) -> Vec<Sample> {
    v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if descending => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
    v
}

fn string_arg(ctx: &dyn Evaluator, c: &Call, i: usize) -> Result<String, EvalError> {
    match ctx.eval(arg(c, i)?)? {
        Value::String(s) => Ok(s),
        _ => Err(EvalError(format!("{} needs string arguments", c.func.name))),
    }
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
        "deriv" => over_time(ctx, c, |p| {
            (p.len() >= 2).then(|| linear_regression(p, p[0].0).0)
        }),
        "predict_linear" => {
            let duration = ctx.scalar(arg(c, 1)?)?;
            let ts = ctx.ts();
            over_time(ctx, c, |p| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(p, ts);
                    slope * duration + intercept
                })
            })
        }
        "holt_winters" => {
            let sf = ctx.scalar(arg(c, 1)?)?;
            let tf = ctx.scalar(arg(c, 2)?)?;
            if sf <= 0.0 || sf >= 1.0 {
                return Err(EvalError(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(EvalError(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            over_time(ctx, c, |p| holt_winters(p, sf, tf))
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
        "avg_over_time" => over_time(ctx, c, |p| Some(kahan_mean(p))),
        "sum_over_time" => over_time(ctx, c, |p| Some(kahan_sum(p))),
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
        "stddev_over_time" => over_time(ctx, c, |p| Some(kahan_variance(p).sqrt())),
        "stdvar_over_time" => over_time(ctx, c, |p| Some(kahan_variance(p))),
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
        // Native-histogram functions: float samples have no histogram to read.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            for a in &c.args.args {
                ctx.eval(a)?;
            }
            Ok(Value::Vector(Vec::new()))
        }
        "acos" => map_vector(ctx, c, f64::acos),
        "acosh" => map_vector(ctx, c, f64::acosh),
        "asin" => map_vector(ctx, c, f64::asin),
        "asinh" => map_vector(ctx, c, f64::asinh),
        "atan" => map_vector(ctx, c, f64::atan),
        "atanh" => map_vector(ctx, c, f64::atanh),
        "cos" => map_vector(ctx, c, f64::cos),
        "cosh" => map_vector(ctx, c, f64::cosh),
        "sin" => map_vector(ctx, c, f64::sin),
        "sinh" => map_vector(ctx, c, f64::sinh),
        "tan" => map_vector(ctx, c, f64::tan),
        "tanh" => map_vector(ctx, c, f64::tanh),
        "deg" => map_vector(ctx, c, |v| v * 180.0 / std::f64::consts::PI),
        "rad" => map_vector(ctx, c, |v| v * std::f64::consts::PI / 180.0),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            if c.args.args.is_empty() {
                // Go's enh.Ts/1000 truncates toward zero, as Rust's division.
                return Ok(Value::Vector(vec![Sample {
                    labels: Labels::default(),
                    value: date_part(ctx.ts() / 1000, name),
                }]));
            }
            // Go's int64(float64) conversion: truncation (saturating here).
            map_vector(ctx, c, |v| date_part(v as i64, name))
        }
        "sort" | "sort_desc" => {
            let v = ctx.vector(arg(c, 0)?)?;
            Ok(Value::Vector(sort_by_value(v, name == "sort_desc")))
        }
        "label_join" => {
            let v = ctx.vector(arg(c, 0)?)?;
            let dst = string_arg(ctx, c, 1)?;
            let sep = string_arg(ctx, c, 2)?;
            let src = (3..c.args.args.len())
                .map(|i| string_arg(ctx, c, i))
                .collect::<Result<Vec<_>, _>>()?;
            if !valid_label_name(&dst) {
                return Err(EvalError(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            if let Some(bad) = src.iter().find(|s| !valid_label_name(s)) {
                return Err(EvalError(format!(
                    "invalid source label name in label_join(): {bad}"
                )));
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| {
                        let joined = src
                            .iter()
                            .map(|l| s.labels.get(l))
                            .collect::<Vec<_>>()
                            .join(&sep);
                        Sample {
                            labels: s.labels.with(&dst, &joined),
                            value: s.value,
                        }
                    })
                    .collect(),
            ))
        }
        "abs" => map_vector(ctx, c, f64::abs),
        "ceil" => map_vector(ctx, c, f64::ceil),
        "floor" => map_vector(ctx, c, f64::floor),
        "exp" => map_vector(ctx, c, f64::exp),
        "ln" => map_vector(ctx, c, f64::ln),
        "log2" => map_vector(ctx, c, go_log2),
        "log10" => map_vector(ctx, c, go_log10),
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
            if !valid_label_name(&dst) {
                return Err(EvalError(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
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
                        go_expand(&caps, &replacement, &mut res);
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

/// Appends `template` with its `$1`, `${1}`, `$name`, `${name}` and `$$` expanded from
/// `caps`, as Go's `regexp.Expand` does (which `label_replace` and the templates'
/// `reReplaceAll` use). It differs from the regex crate's own `expand` where Go's
/// reading differs: a name runs over letters and digits of any script and `_`, a
/// number with a leading zero (`$01`) is a name, not group 1, and a `$` that starts
/// no name is written as it is.
pub(crate) fn go_expand(caps: &regex::Captures<'_>, template: &str, out: &mut String) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len: usize = body
            .chars()
            .take_while(|c| c.is_alphabetic() || c.is_numeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        let closed = !braced || body[len..].starts_with('}');
        if len == 0 || !closed {
            // Malformed: the `$` is text.
            out.push('$');
            continue;
        }
        let name = &body[..len];
        rest = &body[len + usize::from(braced)..];
        let number = if name.bytes().all(|b| b.is_ascii_digit())
            && !(name.len() > 1 && name.starts_with('0'))
        {
            name.parse::<usize>().ok().filter(|n| *n < 100_000_000)
        } else {
            None
        };
        let group = match number {
            Some(n) => caps.get(n),
            None => caps.name(name),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
}
