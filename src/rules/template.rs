//! Label and annotation templates: the part of Go's text/template that alert rules
//! use, checked when rules load.
//!
//! Supported: literal text and `{{ … }}` actions holding `$value`, `$labels.NAME`
//! (or `$labels.NAME` in a pipeline), optionally piped into `humanize`,
//! `humanize1024`, `humanizePercentage`, `humanizeDuration`, or written as a call
//! (`{{ humanize $value }}`), and `printf "%.2f" $value`. Anything else is refused at
//! load time with the action's text.

use crate::store::Labels;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Literal text.
    Text(String),
    /// An action: what to print and how.
    Action { source: Source, format: Format },
}

/// What an action prints.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The alert's value.
    Value,
    /// A label of the alert's sample.
    Label(String),
}

/// How an action formats its source.
/// The widest width or precision `printf` takes.
const MAX_PRINTF: u64 = 100;

#[derive(Debug, Clone, PartialEq)]
enum Format {
    /// As Go prints it.
    Plain,
    /// `humanize`.
    Humanize,
    /// `humanize1024`.
    Humanize1024,
    /// `humanizePercentage`.
    Percentage,
    /// `humanizeDuration`.
    Duration,
    /// `printf` with a C-like float verb.
    Printf(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

fn parse_source(word: &str) -> Result<Source, String> {
    if word == "$value" || word == ".Value" {
        Ok(Source::Value)
    } else if let Some(name) = word
        .strip_prefix("$labels.")
        .or_else(|| word.strip_prefix(".Labels."))
    {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label reference {word:?}"));
        }
        Ok(Source::Label(name.to_string()))
    } else {
        Err(format!("{word:?} is not $value or $labels.NAME"))
    }
}

fn parse_function(word: &str) -> Option<Format> {
    Some(match word {
        "humanize" => Format::Humanize,
        "humanize1024" => Format::Humanize1024,
        "humanizePercentage" => Format::Percentage,
        "humanizeDuration" => Format::Duration,
        _ => return None,
    })
}

fn parse_action(action: &str) -> Result<Part, String> {
    let a = action
        .trim()
        .trim_start_matches('-')
        .trim_end_matches('-')
        .trim();
    let unsupported = || {
        format!(
            "template action {{{{ {a} }}}} is not supported; use $value, $labels.NAME, a pipe into humanize, humanizePercentage or humanizeDuration, or printf \"%.2f\" $value"
        )
    };
    if let Some((left, right)) = a.split_once('|') {
        let source = parse_source(left.trim()).map_err(|_| unsupported())?;
        let format = parse_function(right.trim()).ok_or_else(unsupported)?;
        return Ok(Part::Action { source, format });
    }
    let words: Vec<&str> = a.split_whitespace().collect();
    match words.as_slice() {
        [one] => Ok(Part::Action {
            source: parse_source(one).map_err(|_| unsupported())?,
            format: Format::Plain,
        }),
        [f, arg] => Ok(Part::Action {
            source: parse_source(arg).map_err(|_| unsupported())?,
            format: parse_function(f).ok_or_else(unsupported)?,
        }),
        ["printf", fmt, arg] => {
            let fmt = fmt.trim_matches('"');
            let ok = fmt.starts_with('%')
                && fmt.ends_with(['f', 'g', 'e'])
                && fmt[1..fmt.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            if !ok {
                return Err(unsupported());
            }
            // Width and precision are bounded: `%.1000000000f` would allocate about
            // a gigabyte at every evaluation.
            if let Some(n) = fmt[1..fmt.len() - 1]
                .split('.')
                .filter_map(|p| p.parse::<u64>().ok())
                .find(|n| *n > MAX_PRINTF)
            {
                return Err(format!(
                    "printf {fmt:?}: {n} is more than the {MAX_PRINTF} digits a width or precision may have"
                ));
            }
            Ok(Part::Action {
                source: parse_source(arg).map_err(|_| unsupported())?,
                format: Format::Printf(fmt.to_string()),
            })
        }
        _ => Err(unsupported()),
    }
}

impl Template {
    /// Parses `text`, refusing any action outside the supported set.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {text:?}"))?;
            parts.push(parse_action(&after[..end])?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Expands the template for a sample with `labels` and `value`.
    pub fn expand(&self, labels: &Labels, value: f64) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { source, format } => match source {
                    Source::Label(name) => {
                        let v = labels.get(name);
                        match format {
                            Format::Plain => out.push_str(v),
                            _ => {
                                out.push_str(&format_number(v.parse().unwrap_or(f64::NAN), format))
                            }
                        }
                    }
                    Source::Value => out.push_str(&format_number(value, format)),
                },
            }
        }
        out
    }
}

fn format_number(v: f64, format: &Format) -> String {
    match format {
        Format::Plain => go_float(v),
        Format::Humanize => humanize(v, 1000.0, &["k", "M", "G", "T", "P", "E", "Z", "Y"]),
        Format::Humanize1024 => {
            humanize(v, 1024.0, &["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"])
        }
        Format::Percentage => format!("{}%", go_g(v * 100.0, 4)),
        Format::Duration => humanize_duration(v),
        Format::Printf(f) => {
            let verb = f.chars().last().unwrap_or('f');
            let precision: usize = f[1..f.len() - 1]
                .split('.')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(6);
            match verb {
                'g' => go_g(v, precision),
                'e' => format!("{v:.precision$e}"),
                _ => format!("{v:.precision$}"),
            }
        }
    }
}

/// Go's `%.{prec}g`: shortest of %e and %f at `prec` significant digits, trailing
/// zeros removed, exponent written `e+06`.
pub(crate) fn go_g(v: f64, prec: usize) -> String {
    if let Some(text) = crate::float::non_finite_text(v) {
        return text.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        with_exponent(&trim_zeros(mantissa), exp)
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}"))
    }
}

/// A mantissa and a decimal exponent as Go writes them: `1.5e+06`, `2e-05`.
fn with_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Go's default formatting of a float64 (`%v`): the shortest representation,
/// exponent form below 1e-4 and from 1e21.
pub(crate) fn go_float(v: f64) -> String {
    if let Some(text) = crate::float::non_finite_text(v) {
        return text.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        with_exponent(m, e.parse().unwrap_or(0))
    } else {
        format!("{v}")
    }
}

fn humanize(mut v: f64, base: f64, big: &[&str]) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in big {
            if v.abs() < base {
                break;
            }
            prefix = p;
            v /= base;
        }
        return format!("{}{prefix}", go_g(v, 4));
    }
    if base == 1024.0 {
        return go_g(v, 4);
    }
    let (v, prefix) = small_prefix(v);
    format!("{}{prefix}", go_g(v, 4))
}

/// Scales a value below 1 into [1, 1000) with its SI prefix (m, u, n, …), as Go's
/// humanize functions do.
fn small_prefix(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let (v, prefix) = small_prefix(v);
    format!("{}{prefix}s", go_g(v, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, v: f64) -> String {
        let l = Labels::from_pairs("up", &[("job", "app"), ("instance", "a:1")]);
        Template::parse(t).unwrap().expand(&l, v)
    }

    #[test]
    fn expands_like_prometheus() {
        assert_eq!(
            expand("{{ $labels.job }} is down ({{ $value }})", 0.0),
            "app is down (0)"
        );
        assert_eq!(expand("{{ $value | humanizePercentage }}", 0.0512), "5.12%");
        assert_eq!(expand("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(expand("{{ humanize $value }}", 0.0025), "2.5m");
        assert_eq!(expand("{{ $value | humanizeDuration }}", 2.5), "2.5s");
        assert_eq!(
            expand("{{ $value | humanizeDuration }}", 3725.0),
            "1h 2m 5s"
        );
        assert_eq!(expand("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}", 0.12345), "0.12");
        assert_eq!(expand("{{$labels.missing}}x", 1.0), "x");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e-5), "1e-05");
        assert_eq!(go_g(123456.0, 4), "1.235e+05");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "{{ $labels.job | toUpper }}",
            "{{ range $labels }}",
            "{{ $value",
            "{{ .Foo }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
