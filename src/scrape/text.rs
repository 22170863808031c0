//! The Prometheus text exposition format (0.0.4), as `/metrics` pages write it.

use crate::store::Labels;
use crate::store::labels::NAME;

/// Parses a page into samples. Timestamps on sample lines are ignored: every sample
/// is stored at the scrape's time. A malformed line fails the whole page, naming the
/// line.
pub fn parse(body: &str) -> Result<Vec<(Labels, f64)>, String> {
    let mut out = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<(Labels, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
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
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("invalid value {v:?}"))?,
    };
    Ok((Labels::new(pairs), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_histograms_and_escapes() {
        let page = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\",route=\"/api/rooms/{id}\",status=\"200\"} 3\nhttp_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 7\nodd{msg=\"a \\\"q\\\" \\\\ b\\nc\"} -Inf 1700000000000\nplain 1.5e3\n\n";
        let s = parse(page).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0].0.to_string(),
            r#"http_requests_total{method="GET", route="/api/rooms/{id}", status="200"}"#
        );
        assert_eq!(s[0].1, 3.0);
        assert_eq!(s[1].0.get("le"), "+Inf");
        assert_eq!(s[2].0.get("msg"), "a \"q\" \\ b\nc");
        assert_eq!(s[2].1, f64::NEG_INFINITY);
        assert_eq!(s[3].1, 1500.0);
    }

    #[test]
    fn a_broken_line_names_its_number() {
        let e = parse("ok 1\nbroken{a=\"x\" 1\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(parse("x notanumber").is_err());
    }
}
