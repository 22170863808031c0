//! The Prometheus text exposition format (0.0.4), as `/metrics` pages write it.

use crate::store::Labels;
use crate::store::labels::{NAME, valid_label_name, valid_metric_name};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (as `__name__`) and the labels.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// The line's timestamp (ms since the epoch), if it has one.
    pub t: Option<i64>,
}

/// Parses a page into samples. A malformed line fails the whole page, naming the
/// line; so does a page with more than `sample_limit` samples (Prometheus's
/// `sample_limit`: the scrape fails whole), found before the rest is parsed. `seen`
/// counts the sample lines read, for `scrape_samples_scraped`.
pub fn parse(body: &str, sample_limit: usize, seen: &mut usize) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    *seen = 0;
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        *seen += 1;
        if *seen > sample_limit {
            // Counted to the end (cheaply) so /status says how far past it is.
            *seen += body[..]
                .lines()
                .skip(n + 1)
                .filter(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with('#')
                })
                .count();
            return Err(format!(
                "{} samples exceed sample_limit ({sample_limit})",
                *seen
            ));
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}: {}", n + 1, shown(line)))?);
    }
    Ok(out)
}

/// A line as an error shows it: at most 120 characters.
fn shown(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{:?}…", &line[..i]),
        None => format!("{line:?}"),
    }
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {}", shown(name)));
    }
    let mut pairs: Vec<(String, String)> = vec![(NAME.to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed: usize;
        loop {
            // Skip separators.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(i, c)) = chars.peek() else {
                return Err("unclosed labels".into());
            };
            if c == '}' {
                consumed = i + 1;
                break;
            }
            let key_start = i;
            let mut key_end = i;
            while let Some(&(j, c)) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    key_end = j;
                    break;
                }
                chars.next();
            }
            let key = after[key_start..key_end].to_string();
            if !valid_label_name(&key) || key == NAME {
                return Err(format!("invalid label name {}", shown(&key)));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(format!("label {key} appears twice"));
            }
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err("unclosed label value".into()),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unclosed label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            pairs.push((key, value));
        }
        rest = &after[consumed..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value =
        crate::float::parse(value).ok_or_else(|| format!("invalid value {}", shown(value)))?;
    let t = match fields.next() {
        None => None,
        Some(ts) => Some(
            ts.parse::<i64>()
                .ok()
                .filter(|&t| (0..=crate::clock::LATEST_MS).contains(&t))
                .ok_or_else(|| format!("invalid timestamp {}", shown(ts)))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {} after the value", shown(extra)));
    }
    Ok(Sample {
        labels: Labels::new(pairs),
        value,
        t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_histograms_and_escapes() {
        let page = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\",route=\"/api/rooms/{id}\",status=\"200\"} 3\nhttp_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 7\nodd{msg=\"a \\\"q\\\" \\\\ b\\nc\"} -Inf 1700000000000\nplain 1.5e3\n\n";
        let mut seen = 0;
        let s = parse(page, usize::MAX, &mut seen).unwrap();
        assert_eq!((s.len(), seen), (4, 4));
        assert_eq!(
            s[0].labels.to_string(),
            r#"http_requests_total{method="GET", route="/api/rooms/{id}", status="200"}"#
        );
        assert_eq!((s[0].value, s[0].t), (3.0, None));
        assert_eq!(s[1].labels.get("le"), "+Inf");
        assert_eq!(s[2].labels.get("msg"), "a \"q\" \\ b\nc");
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert_eq!(s[2].t, Some(1_700_000_000_000), "the timestamp is kept");
        assert_eq!(s[3].value, 1500.0);
    }

    #[test]
    fn a_broken_line_names_its_number() {
        let mut seen = 0;
        let e = parse("ok 1\nbroken{a=\"x\" 1\n", usize::MAX, &mut seen).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        for bad in [
            "x notanumber",
            "x 1 notatime",
            "x 1 -5",
            "x 1 2 3",
            "0x 1",
            "x{0a=\"b\"} 1",
            "x{a=\"b\",a=\"c\"} 1",
            "x{__name__=\"y\"} 1",
        ] {
            assert!(parse(bad, usize::MAX, &mut seen).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_page_past_the_sample_limit_fails_whole_and_says_by_how_much() {
        let page = "# HELP a A.\na 1\nb 2\nc 3\n\n# x\nd 4\n";
        let mut seen = 0;
        assert_eq!(parse(page, 4, &mut seen).unwrap().len(), 4);
        let e = parse(page, 3, &mut seen).unwrap_err();
        assert_eq!(e, "4 samples exceed sample_limit (3)");
        assert_eq!(seen, 4);
    }
}
