//! Evaluation of an expression at one instant, over the store.

use rustc_hash::FxHashMap as HashMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};

use super::functions;
use super::value::{EvalError, Evaluator, LOOKBACK_MS, Range, Sample, Value, offset_ms};
use crate::store::labels::NAME;
use crate::store::{Labels, SeriesWindow, Store, is_stale};

/// The step of a subquery written without one (`x[5m:]`): Prometheus's default
/// global `evaluation_interval`, which is also what promtool's tests use.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The evaluation context: the store and the instant.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Where the samples are.
    pub store: &'a Store,
    /// The evaluation time, milliseconds since the epoch: the rule's instant, or
    /// one step of a subquery.
    pub ts: i64,
    /// The query's own instant, what `@ start()` and `@ end()` stand for (a rule is
    /// an instant query, so both are its evaluation time); subqueries keep it.
    pub query_ts: i64,
    /// The step of a subquery that names none.
    pub default_step: i64,
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
    fn matrix(&self, expr: &Expr) -> Result<Option<(Vec<Range>, i64, i64)>, EvalError> {
        Ctx::matrix(self, expr)
    }
}

/// Evaluates `expr` over `store` at `ts` (milliseconds).
pub fn evaluate(expr: &Expr, store: &Store, ts: i64) -> Result<Value, EvalError> {
    Ctx::new(store, ts).eval(expr)
}

/// An `@` modifier's instant in milliseconds (negative before 1970), `query_ts` for
/// `start()` and `end()`.
fn at_ms(at: &AtModifier, query_ts: i64) -> i64 {
    match at {
        AtModifier::Start | AtModifier::End => query_ts,
        AtModifier::At(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        },
    }
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

impl<'a> Ctx<'a> {
    /// A context for an instant query at `ts` over `store`.
    pub fn new(store: &'a Store, ts: i64) -> Ctx<'a> {
        Ctx {
            store,
            ts,
            query_ts: ts,
            default_step: DEFAULT_SUBQUERY_STEP_MS,
        }
    }

    /// The instant a selector or subquery reads at: its `@` instant or the
    /// evaluation time, less its offset.
    fn read_at(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<promql_parser::parser::Offset>,
    ) -> i64 {
        at.as_ref().map_or(self.ts, |a| at_ms(a, self.query_ts)) - offset_ms(offset)
    }

    /// A range argument (a matrix selector or a subquery, in parentheses or not):
    /// its series, its range and the instant it ends at. `None` for anything else.
    pub fn matrix(&self, expr: &Expr) -> Result<Option<(Vec<Range>, i64, i64)>, EvalError> {
        match expr {
            Expr::Paren(p) => self.matrix(&p.expr),
            Expr::MatrixSelector(m) => {
                let range = m.range.as_millis() as i64;
                let end = self.read_at(&m.vs.at, &m.vs.offset);
                Ok(Some((self.range(&m.vs, range), range, end)))
            }
            Expr::Subquery(sq) => self.subquery(sq).map(Some),
            _ => Ok(None),
        }
    }

    /// A subquery: the inner expression at every step aligned to the step (as
    /// Prometheus aligns them: multiples of the step since the epoch) in
    /// `[end - range, end]`.
    fn subquery(&self, sq: &SubqueryExpr) -> Result<(Vec<Range>, i64, i64), EvalError> {
        let range = sq.range.as_millis() as i64;
        let step = sq
            .step
            .map(|s| s.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step);
        let end = self.read_at(&sq.at, &sq.offset);
        let from = end - range;
        // Go's integer division truncates toward zero, as Rust's does.
        let mut t = step * (from / step);
        if t < from {
            t += step;
        }
        if (end - t) / step >= MAX_SUBQUERY_STEPS {
            return Err(EvalError(TOO_MANY_SAMPLES.into()));
        }
        let mut out: Vec<Range> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::default();
        let mut points = 0usize;
        while t <= end {
            let inner = Ctx { ts: t, ..*self };
            let samples = inner.vector(&sq.expr)?;
            points += samples.len();
            if points > MAX_SUBQUERY_POINTS {
                return Err(EvalError(TOO_MANY_SAMPLES.into()));
            }
            for s in samples {
                match index.get(&s.labels) {
                    Some(&i) => out[i].points.push((t, s.value)),
                    None => {
                        index.insert(s.labels.clone(), out.len());
                        out.push(Range {
                            plain: s.labels.without_name(),
                            labels: s.labels,
                            points: vec![(t, s.value)],
                        });
                    }
                }
            }
            t += step;
        }
        Ok((out, range, end))
    }

    /// Unary minus: the name dropped, the value negated.
    fn unary(&self, u: &promql_parser::parser::UnaryExpr) -> Result<Value, EvalError> {
        match self.eval(&u.expr)? {
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
        }
    }

    /// Evaluates `expr`.
    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) if several_names(&u.expr) => unique(self.unary(u)?),
            Expr::Unary(u) => self.unary(u),
            Expr::VectorSelector(v) => Ok(Value::Vector(self.instant(v))),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => match self.matrix(expr)? {
                Some((m, _, _)) => Ok(Value::Matrix(m)),
                None => Ok(Value::Matrix(Vec::new())),
            },
            Expr::Call(c) => {
                let out = functions::call(self, c)?;
                let rewrites = matches!(c.func.name, "label_replace" | "label_join");
                if rewrites || c.args.args.iter().any(|a| several_names(a)) {
                    unique(out)
                } else {
                    Ok(out)
                }
            }
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => {
                let out = self.binary(b)?;
                if several_names(&b.lhs) || several_names(&b.rhs) {
                    unique(out)
                } else {
                    Ok(out)
                }
            }
            Expr::Extension(_) => Err(EvalError("not supported".into())),
        }
    }

    /// The instant vector of a selector: each matching series' newest sample in the
    /// lookback window, unless that sample is a stale marker.
    pub fn instant(&self, v: &VectorSelector) -> Vec<Sample> {
        self.instant_timed(v).into_iter().map(|(s, _)| s).collect()
    }

    /// [`Ctx::instant`] with each sample's own timestamp (ms), for `timestamp()`.
    pub fn instant_timed(&self, v: &VectorSelector) -> Vec<(Sample, i64)> {
        let at = self.read_at(&v.at, &v.offset);
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
        let at = self.read_at(&v.at, &v.offset);
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
                        let labels = key.with(&label, &text);
                        // The value's label may be a grouping label too (`count_values
                        // by (job) ("job", x)`): groups that meet under it are one,
                        // as Prometheus groups after setting the label.
                        match out.iter_mut().find(|s| s.labels == labels) {
                            Some(s) => s.value += n,
                            None => out.push(Sample { labels, value: n }),
                        }
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

/// Prometheus's check on every function's and operator's result: two elements with
/// the same labels (`rate({__name__=~"a|b"}[5m])` once the names are dropped) are an
/// error, not a choice.
/// Most steps one subquery evaluates (`x[1000d:1ms]` would be 8.6e10).
const MAX_SUBQUERY_STEPS: i64 = 100_000;

/// Most points one subquery holds (80 MB of them). Prometheus stops at 50 million
/// samples per query (`--query.max-samples`); a sidecar's memory is smaller.
const MAX_SUBQUERY_POINTS: usize = 5_000_000;

/// Prometheus's message when a query would hold more than it may.
const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// Whether `expr`'s samples may carry more than one metric name. Only then can a
/// function or operator that drops the name make two of them one (labels rewritten
/// by `label_replace` and `label_join` aside), so only then is its result checked
/// for duplicates: series of one name differ in another label, which stays.
fn several_names(expr: &Expr) -> bool {
    fn fixed(v: &VectorSelector) -> bool {
        v.name.is_some()
            || v.matchers
                .matchers
                .iter()
                .any(|m| m.name == NAME && matches!(m.op, MatchOp::Equal))
    }
    match expr {
        Expr::VectorSelector(v) => !fixed(v),
        Expr::MatrixSelector(m) => !fixed(&m.vs),
        Expr::Paren(p) => several_names(&p.expr),
        Expr::Subquery(q) => several_names(&q.expr),
        Expr::Unary(u) => several_names(&u.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => false,
        Expr::Aggregate(a) if a.op.to_string() == "count_values" => true,
        Expr::Aggregate(a) => {
            let keeps_name = match &a.modifier {
                Some(LabelModifier::Include(keep)) => keep.labels.iter().any(|l| l == NAME),
                _ => false,
            };
            (keeps_name || matches!(a.op.to_string().as_str(), "topk" | "bottomk"))
                && several_names(&a.expr)
        }
        Expr::Binary(b) => several_names(&b.lhs) || several_names(&b.rhs),
        Expr::Call(c) => {
            matches!(c.func.name, "label_replace" | "label_join")
                || c.args.args.iter().any(|a| several_names(a))
        }
        Expr::Extension(_) => true,
    }
}

/// Prometheus's check that a result holds each label set once.
fn unique(v: Value) -> Result<Value, EvalError> {
    if let Value::Vector(samples) = &v
        && samples.len() > 1
    {
        let mut seen: rustc_hash::FxHashSet<&Labels> = rustc_hash::FxHashSet::default();
        seen.reserve(samples.len());
        if !samples.iter().all(|s| seen.insert(&s.labels)) {
            return Err(EvalError(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(v)
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
        if let Some(existing) = index.insert(signature(&s.labels, matching), s) {
            let side = if swapped { "left" } else { "right" };
            return Err(EvalError(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                signature(&s.labels, matching).prometheus_string(),
                s.labels.prometheus_string(),
                existing.labels.prometheus_string()
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
