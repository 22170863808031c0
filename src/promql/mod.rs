//! The subset of PromQL that alerting rules use, with Prometheus 2.x semantics (as
//! Debian's `promtool` 2.42 implements them).
//!
//! Expressions are parsed by `promql-parser` and checked once, when rules load: an
//! expression outside the subset (a subquery, the `@` modifier, a function Vigil does
//! not implement) is refused with a message, never evaluated wrongly. Evaluation
//! ([`eval`]) reads the [`crate::store::Store`] at one instant.

pub mod eval;
mod functions;
pub mod value;

use promql_parser::parser::{Expr, parse as parse_expr};

pub use eval::evaluate;
pub(crate) use functions::format_value;
pub use value::{EvalError, Sample, Value};

/// Functions Vigil evaluates.
pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
];

/// Aggregation operators Vigil evaluates.
pub(crate) const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "count_values",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
];

/// An expression that cannot be used, with the byte offset in the expression text
/// it is about (0 when the parser does not say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Where in the expression text, as a byte offset.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// The closest name to `wrong` among `known`, when it is close enough to be a typo.
fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .into_iter()
        .map(|k| (distance(wrong, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// Parses `text` and checks it stays inside the subset Vigil evaluates.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    // promql-parser panics on some numbers (`up[1e400]`, `up offset 1e30` hand an
    // infinite or huge float to `Duration::from_secs_f64`): a rule file must not be
    // able to stop the daemon, so a panic is a parse error like any other.
    let parsed = std::panic::catch_unwind(|| parse_expr(text)).unwrap_or_else(|_| {
        Err(format!(
            "cannot parse {text:?}: a number in it is out of range for a duration"
        ))
    });
    let expr = parsed.map_err(|message| {
        if let Some(rest) = message.strip_prefix("unknown function with name '") {
            let name = rest.trim_end_matches('\'');
            let offset = text.find(&format!("{name}(")).unwrap_or(0);
            let known = promql_function_names();
            let hint = suggest(name, known.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return ParseError {
                offset,
                message: format!("function \"{name}\" is not known{hint}"),
            };
        }
        ParseError { offset: 0, message }
    })?;
    check(&expr, text)?;
    Ok(expr)
}

fn promql_function_names() -> Vec<&'static str> {
    FUNCTIONS.to_vec()
}

/// Refuses what Vigil does not evaluate.
fn check(expr: &Expr, text: &str) -> Result<(), ParseError> {
    let refuse = |needle: &str, message: String| ParseError {
        offset: text.find(needle).unwrap_or(0),
        message,
    };
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(refuse(
                    &op,
                    format!("aggregation \"{op}\" is not supported by Vigil"),
                ));
            }
            if let Some(p) = &a.param {
                check(p, text)?;
            }
            check(&a.expr, text)
        }
        Expr::Unary(u) => check(&u.expr, text),
        Expr::Binary(b) => {
            check(&b.lhs, text)?;
            check(&b.rhs, text)
        }
        Expr::Paren(p) => check(&p.expr, text),
        Expr::Subquery(_) => Err(refuse(
            ":",
            "subqueries are not supported by Vigil; write a recording rule and select it instead"
                .to_string(),
        )),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(v) => check_selector(v, text),
        Expr::MatrixSelector(m) => check_selector(&m.vs, text),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(refuse(
                    &format!("{}(", c.func.name),
                    format!("function \"{}\" is not supported by Vigil", c.func.name),
                ));
            }
            for a in &c.args.args {
                check(a, text)?;
            }
            Ok(())
        }
        Expr::Extension(_) => Err(refuse(
            "",
            "extension expressions are not supported".to_string(),
        )),
    }
}

fn check_selector(v: &promql_parser::parser::VectorSelector, text: &str) -> Result<(), ParseError> {
    if v.at.is_some() {
        return Err(ParseError {
            offset: text.find('@').unwrap_or(0),
            message: "the @ modifier is not supported by Vigil".to_string(),
        });
    }
    if !v.matchers.or_matchers.is_empty() {
        return Err(ParseError {
            offset: text.find(" or ").unwrap_or(0),
            message: "`or` inside a selector's braces is not supported by Prometheus 2; write two selectors".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_the_parser_would_panic_on_are_a_parse_error() {
        for text in ["up[1e400]", "up offset 1e30", "rate(up[1e400])"] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains("out of range"), "{text}: {}", e.message);
        }
    }

    #[test]
    fn a_typo_gets_a_suggestion_and_an_offset() {
        let e = parse("sum(rat(x[5m]))").unwrap_err();
        assert_eq!(
            e.message,
            "function \"rat\" is not known (did you mean \"rate\"?)"
        );
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn outside_the_subset_is_refused() {
        assert!(
            parse("max_over_time(x[5m:1m])")
                .unwrap_err()
                .message
                .contains("subqueries")
        );
        assert!(parse("x @ 100").unwrap_err().message.contains("@ modifier"));
        assert!(
            parse("predict_linear(x[5m], 60)")
                .unwrap_err()
                .message
                .contains("not supported")
        );
        assert!(parse("sum by (job) (rate(x[5m])) > 0.05").is_ok());
    }
}
