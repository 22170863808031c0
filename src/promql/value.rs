//! The values PromQL computes (as Prometheus keeps them in `promql/value.go`), and
//! what a function needs of the evaluator: the evaluator ([`super::eval`]) and the
//! functions (`functions.rs`) both import this file, never each other's.

use promql_parser::parser::{Expr, Offset, VectorSelector};

use crate::store::Labels;

/// Default lookback for instant selectors: a series without a sample in the last 5
/// minutes has no value.
pub(crate) const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// A selector's `offset` in milliseconds (negative for `offset -5m`).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// Its labels.
    pub labels: Labels,
    /// Its labels without `__name__` (shared with the store).
    pub plain: Labels,
    /// Its samples in time order, stale markers removed.
    pub points: Vec<(i64, f64)>,
}

/// The result of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Range>),
}

/// An expression that cannot be evaluated on this data (Prometheus's runtime errors,
/// such as ambiguous vector matching).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// What a function needs of the evaluator: the instant, its arguments evaluated,
/// and the samples of a selector.
pub trait Evaluator {
    /// The evaluation time, milliseconds since the epoch.
    fn ts(&self) -> i64;
    /// Evaluates `expr`.
    fn eval(&self, expr: &Expr) -> Result<Value, EvalError>;
    /// The range vector of a selector over `range_ms` before the instant (less its
    /// offset).
    fn range(&self, v: &VectorSelector, range_ms: i64) -> Vec<Range>;
    /// The instant vector of a selector with each sample's timestamp.
    fn instant_timed(&self, v: &VectorSelector) -> Vec<(Sample, i64)>;
    /// A range argument (matrix selector or subquery): its series, its range and
    /// the instant it ends at (ms); `None` when `expr` is neither.
    #[allow(clippy::type_complexity)]
    fn matrix(&self, expr: &Expr) -> Result<Option<(Vec<Range>, i64, i64)>, EvalError>;

    /// Evaluates `expr` and requires an instant vector.
    fn vector(&self, expr: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            other => Err(EvalError(format!(
                "expected an instant vector, got {other:?}"
            ))),
        }
    }

    /// Evaluates `expr` and requires a scalar.
    fn scalar(&self, expr: &Expr) -> Result<f64, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(EvalError("expected a scalar".into())),
        }
    }
}
