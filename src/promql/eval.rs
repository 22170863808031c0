//! Evaluation of an expression at one instant, over the store.

use rustc_hash::FxHashMap as HashMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Expr, LabelModifier, VectorMatchCardinality, VectorSelector,
};

use super::functions;
use super::value::{EvalError, Evaluator, LOOKBACK_MS, Range, Sample, Value, offset_ms};
use crate::store::labels::NAME;
use crate::store::{Labels, SeriesWindow, Store, is_stale};

/// The evaluation context: the store and the instant.
pub struct Ctx<'a> {
    /// Where the samples are.
    pub store: &'a Store,
    /// The evaluation time, milliseconds since the epoch.
    pub ts: i64,
}

impl Evaluator for Ctx<'_> {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        Ctx::eval(self, expr)
    }
    fn range(&self, v: &VectorSelector, range_ms: i64) -> Vec<Range> {
        Ctx::range(self, v, range_ms)
    }
    fn instant_timed(&self, v: &VectorSelector) -> Vec<(Sample, i64)> {
        Ctx::instant_timed(self, v)
    }
}

/// Evaluates `expr` over `store` at `ts` (milliseconds).
pub fn evaluate(expr: &Expr, store: &Store, ts: i64) -> Result<Value, EvalError> {
    Ctx { store, ts }.eval(expr)
}

/// The samples in `(from, to]` of the series `v` selects, each with its newest
/// sample in the `lookback` before `from` (see [`Store::windows`]).
pub fn windows(
    store: &Store,
    v: &VectorSelector,
    from: i64,
    to: i64,
    lookback: i64,
) -> Vec<SeriesWindow> {
    store.windows(&equalities(v), |l| selects(v, l), from, to, lookback)
}

/// Whether a series' labels satisfy the selector's matchers other than the
/// equalities the store's index already enforced (see [`equalities`]).
pub(crate) fn selects(v: &VectorSelector, labels: &Labels) -> bool {
    v.matchers.matchers.iter().filter(|m| !indexed(m)).all(|m| {
        let value = labels.get(&m.name);
        match &m.op {
            MatchOp::Equal => value == m.value,
            MatchOp::NotEqual => value != m.value,
            MatchOp::Re(r) => r.is_match(value),
            MatchOp::NotRe(r) => !r.is_match(value),
        }
    })
}

/// Whether the store's index enforces this matcher: an equality with a non-empty
/// value (an empty value matches series without the label, which no posting holds).
fn indexed(m: &promql_parser::label::Matcher) -> bool {
    matches!(m.op, MatchOp::Equal) && !m.value.is_empty()
}

/// The selector's indexed matchers (its name among them), for the store.
pub(crate) fn equalities(v: &VectorSelector) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = v
        .matchers
        .matchers
        .iter()
        .filter(|m| indexed(m))
        .map(|m| (m.name.as_str(), m.value.as_str()))
        .collect();
    if let Some(n) = &v.name {
        out.push((NAME, n.as_str()));
    }
    out
}

impl Ctx<'_> {
    /// Evaluates `expr`.
    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: s.labels.without_name(),
                            value: -s.value,
                        })
                        .collect(),
                )),
                _ => Err(EvalError(
                    "unary minus needs a scalar or an instant vector".into(),
                )),
            },
            Expr::VectorSelector(v) => Ok(Value::Vector(self.instant(v))),
            Expr::MatrixSelector(m) => {
                Ok(Value::Matrix(self.range(&m.vs, m.range.as_millis() as i64)))
            }
            Expr::Call(c) => functions::call(self, c),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Subquery(_) | Expr::Extension(_) => Err(EvalError("not supported".into())),
        }
    }

    /// The instant vector of a selector: each matching series' newest sample in the
    /// lookback window, unless that sample is a stale marker.
    pub fn instant(&self, v: &VectorSelector) -> Vec<Sample> {
        self.instant_timed(v).into_iter().map(|(s, _)| s).collect()
    }

    /// [`Ctx::instant`] with each sample's own timestamp (ms), for `timestamp()`.
    pub fn instant_timed(&self, v: &VectorSelector) -> Vec<(Sample, i64)> {
        let at = self.ts - offset_ms(&v.offset);
        self.store
            .select(&equalities(v), |l| selects(v, l))
            .into_iter()
            .filter_map(|s| {
                let (t, value) = s.latest(at)?;
                (t >= at - LOOKBACK_MS && !is_stale(value)).then(|| {
                    let sample = Sample {
                        labels: s.labels.clone(),
                        value,
                    };
                    (sample, t)
                })
            })
            .collect()
    }

    /// The range vector of a selector: samples in `[at - range, at]`.
    pub fn range(&self, v: &VectorSelector, range_ms: i64) -> Vec<Range> {
        let at = self.ts - offset_ms(&v.offset);
        self.store
            .select(&equalities(v), |l| selects(v, l))
            .into_iter()
            .filter_map(|s| {
                let window = s.range(at - range_ms, at);
                let mut points = Vec::with_capacity(window.len());
                points.extend(window.filter(|(_, v)| !is_stale(*v)));
                (!points.is_empty()).then(|| Range {
                    labels: s.labels.clone(),
                    plain: s.plain.clone(),
                    points,
                })
            })
            .collect()
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let op = a.op.to_string();
        let input = self.vector(&a.expr)?;
        let param = match &a.param {
            Some(p) => Some(self.eval(p)?),
            None => None,
        };
        let group_key = |l: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::default(),
                Some(LabelModifier::Include(keep)) => {
                    l.without(|k| !keep.labels.iter().any(|x| x == k))
                }
                Some(LabelModifier::Exclude(drop)) => {
                    l.without(|k| k == NAME || drop.labels.iter().any(|x| x == k))
                }
            }
        };
        // Groups in first-seen order, as Prometheus's output order.
        let mut order: Vec<Labels> = Vec::new();
        let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::default();
        for s in input {
            let key = group_key(&s.labels);
            groups
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(s);
        }
        let mut out = Vec::new();
        for key in order {
            let members = groups.remove(&key).unwrap_or_default();
            let values: Vec<f64> = members.iter().map(|s| s.value).collect();
            let one = |value: f64| Sample {
                labels: key.clone(),
                value,
            };
            match op.as_str() {
                "sum" => out.push(one(values.iter().sum())),
                "avg" => out.push(one(functions::mean(&values))),
                "count" => out.push(one(values.len() as f64)),
                "group" => out.push(one(1.0)),
                "min" => out
                    .push(one(values.iter().copied().fold(f64::NAN, |m, v| {
                        if m.is_nan() || v < m { v } else { m }
                    }))),
                "max" => out
                    .push(one(values.iter().copied().fold(f64::NAN, |m, v| {
                        if m.is_nan() || v > m { v } else { m }
                    }))),
                "stddev" => out.push(one(functions::variance(&values).sqrt())),
                "stdvar" => out.push(one(functions::variance(&values))),
                "quantile" => {
                    let q = match param {
                        Some(Value::Scalar(q)) => q,
                        _ => return Err(EvalError("quantile needs a scalar parameter".into())),
                    };
                    out.push(one(functions::quantile(q, values)));
                }
                "topk" | "bottomk" => {
                    let k = match param {
                        Some(Value::Scalar(k)) => k,
                        _ => return Err(EvalError(format!("{op} needs a scalar parameter"))),
                    };
                    if k < 1.0 {
                        continue;
                    }
                    let mut members = members;
                    let top = op == "topk";
                    // NaN sorts last either way, as in Prometheus.
                    members.sort_by(|a, b| {
                        let (x, y) = (a.value, b.value);
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if top => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                    members.truncate(k.min(members.len() as f64) as usize);
                    out.extend(members);
                }
                "count_values" => {
                    let label = match &param {
                        Some(Value::String(s)) => s.clone(),
                        _ => return Err(EvalError("count_values needs a string parameter".into())),
                    };
                    let mut counts: Vec<(String, f64)> = Vec::new();
                    for v in values {
                        let text = functions::format_value(v);
                        match counts.iter_mut().find(|(t, _)| *t == text) {
                            Some(c) => c.1 += 1.0,
                            None => counts.push((text, 1.0)),
                        }
                    }
                    for (text, n) in counts {
                        out.push(Sample {
                            labels: key.with(&label, &text),
                            value: n,
                        });
                    }
                }
                other => return Err(EvalError(format!("aggregation {other} is not supported"))),
            }
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let comparison = is_comparison(&op);
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = apply(&op, l, r)?;
                Ok(Value::Scalar(if comparison {
                    f64::from(u8::from(keep))
                } else {
                    v
                }))
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, false, return_bool)?))
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, true, return_bool)?))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let m = b.modifier.as_ref();
                let matching = m.and_then(|m| m.matching.as_ref());
                let card = m
                    .map(|m| m.card.clone())
                    .unwrap_or(VectorMatchCardinality::OneToOne);
                let sig = |l: &Labels| signature(l, matching);
                match op.as_str() {
                    "and" => {
                        let keys: rustc_hash::FxHashSet<Labels> =
                            r.iter().map(|s| sig(&s.labels)).collect();
                        Ok(Value::Vector(
                            l.into_iter()
                                .filter(|s| keys.contains(&sig(&s.labels)))
                                .collect(),
                        ))
                    }
                    "unless" => {
                        let keys: rustc_hash::FxHashSet<Labels> =
                            r.iter().map(|s| sig(&s.labels)).collect();
                        Ok(Value::Vector(
                            l.into_iter()
                                .filter(|s| !keys.contains(&sig(&s.labels)))
                                .collect(),
                        ))
                    }
                    "or" => {
                        let keys: rustc_hash::FxHashSet<Labels> =
                            l.iter().map(|s| sig(&s.labels)).collect();
                        let mut out = l;
                        out.extend(r.into_iter().filter(|s| !keys.contains(&sig(&s.labels))));
                        Ok(Value::Vector(out))
                    }
                    _ => Ok(Value::Vector(vector_vector(
                        &op,
                        l,
                        r,
                        matching,
                        &card,
                        return_bool,
                    )?)),
                }
            }
            _ => Err(EvalError(format!(
                "operator {op} needs scalars or instant vectors"
            ))),
        }
    }
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Applies an arithmetic or comparison operator: the value, and for comparisons
/// whether the comparison holds (the value is then the left operand).
fn apply(op: &str, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return Err(EvalError(format!("operator {other} is not supported"))),
    })
}

fn vector_scalar(
    op: &str,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for sample in v {
        let (l, r) = if scalar_left {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        let (mut value, keep) = apply(op, l, r)?;
        if comparison {
            // A filter keeps the vector's own value, whichever side it is on.
            value = sample.value;
            if return_bool {
                value = f64::from(u8::from(keep));
            } else if !keep {
                continue;
            }
        }
        let labels = if !comparison || return_bool {
            sample.labels.without_name()
        } else {
            sample.labels
        };
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// The labels a sample is matched on.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l.without(|k| !on.labels.iter().any(|x| x == k)),
        Some(LabelModifier::Exclude(ign)) => {
            l.without(|k| k == NAME || ign.labels.iter().any(|x| x == k))
        }
        None => l.without_name(),
    }
}

fn vector_vector(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let comparison = is_comparison(op);
    // The "one" side is indexed; group_right swaps the roles.
    let (many, one, swapped) = match card {
        VectorMatchCardinality::OneToMany(_) => (rhs, lhs, true),
        _ => (lhs, rhs, false),
    };
    let mut index: HashMap<Labels, &Sample> = HashMap::default();
    for s in &one {
        if index.insert(signature(&s.labels, matching), s).is_some() {
            let side = if swapped { "left" } else { "right" };
            return Err(EvalError(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                signature(&s.labels, matching)
            )));
        }
    }
    let include: &[String] = match card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut seen: HashMap<Labels, ()> = HashMap::default();
    let mut grouped: HashMap<(Labels, Labels), ()> = HashMap::default();
    let mut out = Vec::new();
    for m in many {
        let sig = signature(&m.labels, matching);
        let Some(o) = index.get(&sig) else { continue };
        let (l, r) = if swapped {
            (o.value, m.value)
        } else {
            (m.value, o.value)
        };
        let (mut value, keep) = apply(op, l, r)?;
        if comparison {
            if return_bool {
                value = f64::from(u8::from(keep));
            } else if !keep {
                continue;
            }
        }
        // Result labels come from the "many" side (the left side for one-to-one).
        let mut labels = if !comparison || return_bool {
            m.labels.without_name()
        } else {
            m.labels.clone()
        };
        if one_to_one {
            labels = match matching {
                Some(LabelModifier::Include(on)) => {
                    labels.without(|k| !on.labels.iter().any(|x| x == k))
                }
                Some(LabelModifier::Exclude(ign)) => {
                    labels.without(|k| ign.labels.iter().any(|x| x == k))
                }
                None => labels,
            };
        }
        for name in include {
            labels = labels.with(name, o.labels.get(name));
        }
        if one_to_one && seen.insert(sig.clone(), ()).is_some() {
            return Err(EvalError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        if !one_to_one && grouped.insert((sig, labels.clone()), ()).is_some() {
            return Err(EvalError(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}
