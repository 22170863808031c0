//! Prometheus 2.42's PromQL over float samples, with its semantics (as Debian's
//! `promtool` 2.42 implements them): every function and aggregation, subqueries,
//! `@` (with `start()` and `end()`) and negative offsets. Native histograms are out.
//!
//! Expressions are parsed by `promql-parser` and checked once, when rules load: a
//! function Prometheus 2.42 lacks, or a `label_replace`/`label_join` destination that
//! is not a label name, is refused with a message. Evaluation ([`eval`]) reads the
//! [`crate::store::Store`] at one instant.

pub mod eval;
mod functions;
pub mod value;

use promql_parser::parser::{Expr, parse as parse_expr};

pub(crate) use crate::store::labels::valid_label_name;
pub use eval::evaluate;
pub(crate) use functions::{format_value, go_expand};
pub use value::{EvalError, Sample, Value};

/// Functions Vigil evaluates: every function of Prometheus 2.42's PromQL
/// (`promql/parser/functions.go` at v2.42.0), and none it lacks (the parser knows
/// later ones, such as `mad_over_time`, which promtool 2.42 refuses).
pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Teaches the parser `holt_winters`, which Prometheus 2.42 has and the parser
/// (following Prometheus 3, which renamed it) does not.
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{Function, register_extra_functions};
        use promql_parser::parser::value::ValueType;
        // The name is not a built-in of this parser version, so this cannot fail;
        // if a later version adds it, the built-in serves as well.
        let _ = register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

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
        .map(|k| (distance(wrong, k), !k.starts_with(wrong), k))
        .filter(|(d, _, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, _, k)| k)
}

/// Parses `text` and checks it stays inside the subset Vigil evaluates.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    register_functions();
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
        Expr::Subquery(sq) => {
            if sq.step.is_some_and(|s| s.is_zero()) {
                return Err(refuse(
                    ":",
                    "a subquery's step must be positive".to_string(),
                ));
            }
            check(&sq.expr, text)
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(v) => check_selector(v, text),
        Expr::MatrixSelector(m) => check_selector(&m.vs, text),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                // As promtool 2.42 says of a function it does not have.
                return Err(refuse(
                    &format!("{}(", c.func.name),
                    format!(
                        "unknown function with name \"{}\" (Prometheus 2.42 has no such function)",
                        c.func.name
                    ),
                ));
            }
            // A destination that is not a label name fails every evaluation in
            // Prometheus: an alert that can never fire. Known now, refused now.
            if matches!(c.func.name, "label_replace" | "label_join")
                && let Some(Expr::StringLiteral(dst)) = c.args.args.get(1).map(|a| &**a)
                && !valid_label_name(&dst.val)
            {
                return Err(refuse(
                    &format!("{}(", c.func.name),
                    format!(
                        "invalid destination label name in {}(): {:?}",
                        c.func.name, dst.val
                    ),
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
        // The last: a subquery's range and step past any duration (found by the fuzzer).
        for text in [
            "up[1e400]",
            "up offset 1e30",
            "rate(up[1e400])",
            ".9[1e88888888888888888888888888888:888]e888",
        ] {
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
    fn all_of_prometheus_2_42_parses_and_nothing_later() {
        for ok in [
            "max_over_time(x[5m:1m])",
            "max_over_time(rate(x[1m])[5m:] offset -1m)",
            "x @ 100",
            "x @ start() offset 5m",
            "rate(x[5m] @ end())",
            "predict_linear(x[1h], 4 * 3600) < 0",
            "holt_winters(x[10m], 0.5, 0.5)",
            "label_join(x, \"dst\", \",\", \"a\", \"b\")",
            "sort_desc(x)",
            "hour() > 8 and day_of_week() < 6",
            "day_of_year(x)",
            "histogram_count(x)",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
        for (later, name) in [
            ("mad_over_time(x[5m])", "mad_over_time"),
            ("sort_by_label(x, \"a\")", "sort_by_label"),
            (
                "double_exponential_smoothing(x[5m], 0.5, 0.5)",
                "double_exponential_smoothing",
            ),
        ] {
            let e = parse(later).unwrap_err();
            assert!(e.message.contains(name), "{later}: {}", e.message);
        }
        // What promtool 2.42's parser refuses (each checked with `promtool check rules`).
        for refused in [
            "x and on() group_left y",
            "x * on(a) group_left(a) y",
            "sum(x) @ start()",
            "first_over_time(x[5m])",
            "rate(x[5m:0s])",
            "x[5m] offset 1e30",
            "sum by (0bad) (x)",
            "{}",
            "{a=\"\"}",
            "x or bool y",
        ] {
            assert!(parse(refused).is_err(), "{refused} was accepted");
        }
        let e = parse("label_replace(x, \"0bad\", \"$1\", \"a\", \"(.*)\")").unwrap_err();
        assert!(
            e.message.contains("invalid destination label name"),
            "{}",
            e.message
        );
    }

    /// The messages promtool 2.42 printed for the same expressions over the same
    /// series (`promtool test rules`, err: lines).
    #[test]
    fn evaluation_errors_read_as_prometheus_2_42s() {
        let mut store = crate::store::Store::new(100, 3_600_000);
        for (name, a) in [("dup", "1"), ("dup", "2"), ("one", "1")] {
            store
                .append(&crate::store::Labels::from_pairs(name, &[("a", a)]), 0, 1.0)
                .unwrap();
        }
        let err = |q: &str| {
            evaluate(&parse(q).unwrap(), &store, 0)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("vector(1) * on() group_left dup"),
            "found duplicate series for the match group {} on the right hand-side of the operation: [{__name__=\"dup\", a=\"2\"}, {__name__=\"dup\", a=\"1\"}];many-to-many matching not allowed: matching labels must be unique on one side"
        );
        assert_eq!(
            err("dup * on() group_right vector(1)"),
            "found duplicate series for the match group {} on the left hand-side of the operation: [{__name__=\"dup\", a=\"2\"}, {__name__=\"dup\", a=\"1\"}];many-to-many matching not allowed: matching labels must be unique on one side"
        );
        assert_eq!(
            err("dup * on() one"),
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
        );
    }

    /// Where dropping the name or rewriting labels makes two series one, the
    /// evaluation fails as promtool 2.42's did for each of these (same series), and
    /// only there.
    #[test]
    fn a_result_with_two_equal_label_sets_is_an_error_as_in_prometheus() {
        let mut store = crate::store::Store::new(100, 3_600_000);
        for (name, pairs) in [
            ("a_total", vec![("x", "1")]),
            ("b_total", vec![("x", "1")]),
            ("c", vec![("x", "1"), ("y", "1")]),
            ("c", vec![("x", "1"), ("y", "2")]),
        ] {
            for t in 0..3 {
                store
                    .append(
                        &crate::store::Labels::from_pairs(name, &pairs),
                        t * 60_000,
                        (t + 1) as f64,
                    )
                    .unwrap();
            }
        }
        let eval = |q: &str| evaluate(&parse(q).unwrap(), &store, 120_000);
        for q in [
            "rate({__name__=~\"a_total|b_total\"}[5m])",
            "{__name__=~\"a_total|b_total\"} * 2",
            "label_replace(c, \"y\", \"z\", \"y\", \".*\")",
            "abs({x=\"1\", __name__!=\"c\"})",
            "sum by (__name__) ({x=\"1\"}) * 1",
            "({__name__=~\"a_total|b_total\"} or c) + 1",
            "-{__name__=~\"a_total|b_total\"}",
            "sum(-{__name__=~\"a_total|b_total\"})",
        ] {
            assert_eq!(
                eval(q).map(|_| ()).unwrap_err().to_string(),
                "vector cannot contain metrics with the same labelset",
                "{q}"
            );
        }
        for q in [
            "{__name__=~\"a_total|b_total\"} > 0",
            "rate(c[5m])",
            "abs(c) * 2",
            "sum by (x) (c) + 1",
            // `or` drops the right side's series whose labels but the name match
            // the left's, so two names cannot meet here.
            "(a_total or b_total) * 2",
            "abs(a_total or b_total)",
        ] {
            assert!(eval(q).is_ok(), "{q}: {:?}", eval(q).map(|_| ()));
        }
    }

    /// A subquery that would evaluate billions of steps, or hold too many points,
    /// fails at once with Prometheus's message for a query past its sample limit.
    #[test]
    fn a_subquery_too_large_fails_with_prometheuss_message() {
        let mut store = crate::store::Store::new(100_000, 3_600_000);
        for i in 0..100 {
            let l = crate::store::Labels::from_pairs("m", &[("i", &i.to_string())]);
            store.append(&l, 0, 1.0).unwrap();
        }
        let err = |q: &str| {
            evaluate(&parse(q).unwrap(), &store, 60_000)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let too_many =
            "query processing would load too many samples into memory in query execution";
        assert_eq!(err("max_over_time(vector(1)[1000d:1ms])"), too_many);
        // The last 60 001 of its 100 000 steps see all 100 series: 6 million points.
        assert_eq!(err("max_over_time(m[99999ms:1ms])"), too_many);
        assert!(evaluate(&parse("max_over_time(m[5m:1s])").unwrap(), &store, 60_000).is_ok());
    }
}
