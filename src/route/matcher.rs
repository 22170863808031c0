//! Label matchers as Alertmanager writes them: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`. Regexes are anchored at both ends.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `=`
    #[serde(rename = "=")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
    /// `=~`
    #[serde(rename = "=~")]
    Regex,
    /// `!~`
    #[serde(rename = "!~")]
    NotRegex,
}

/// One label matcher. Parsed, never built invalid: the regex compiled.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: Op,
    /// The value or pattern as written.
    pub value: String,
    /// The anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl Matcher {
    /// A matcher from its parts; fails on an invalid label name or regex.
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        let valid_name = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(format!("invalid label name {name:?}"));
        }
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `name="value"` (quotes optional for plain values).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| format!("{text:?} is not a matcher: write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\""))?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Equal, v)
        } else {
            return Err(format!("{text:?}: expected =, !=, =~ or !~ after {name:?}"));
        };
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            serde_json::from_str::<String>(value)
                .map_err(|e| format!("{text:?}: bad quoted value: {e}"))?
        } else if value.contains('"') {
            return Err(format!("{text:?}: unbalanced quotes"));
        } else {
            value.to_string()
        };
        Matcher::new(name, op, &value)
    }

    /// Whether a label value (`""` when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            Op::Equal => value == self.value,
            Op::NotEqual => value != self.value,
            Op::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            Op::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

/// Whether every matcher matches the labels that `get` looks up.
pub(crate) fn all_match<'a>(matchers: &[Matcher], get: impl Fn(&str) -> &'a str) -> bool {
    matchers.iter().all(|m| m.matches(get(&m.name)))
}

impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            value: &'a str,
            #[serde(rename = "isRegex")]
            is_regex: bool,
            #[serde(rename = "isEqual")]
            is_equal: bool,
        }
        Wire {
            name: &self.name,
            value: &self.value,
            is_regex: matches!(self.op, Op::Regex | Op::NotRegex),
            is_equal: matches!(self.op, Op::Equal | Op::Regex),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    /// Alertmanager's API form (`{"name", "value", "isRegex", "isEqual"}`) or the
    /// text form (`"name=\"value\""`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Matcher, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Object {
                name: String,
                value: String,
                #[serde(rename = "isRegex", default)]
                is_regex: bool,
                #[serde(rename = "isEqual", default = "yes")]
                is_equal: bool,
            },
        }
        fn yes() -> bool {
            true
        }
        match Wire::deserialize(d)? {
            Wire::Text(t) => Matcher::parse(&t).map_err(serde::de::Error::custom),
            Wire::Object {
                name,
                value,
                is_regex,
                is_equal,
            } => {
                let op = match (is_regex, is_equal) {
                    (false, true) => Op::Equal,
                    (false, false) => Op::NotEqual,
                    (true, true) => Op::Regex,
                    (true, false) => Op::NotRegex,
                };
                Matcher::new(&name, op, &value).map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_operators_parse_and_match() {
        let m = Matcher::parse(r#"severity="critical""#).unwrap();
        assert!(m.matches("critical") && !m.matches("warning"));
        let m = Matcher::parse(r#"severity!="critical""#).unwrap();
        assert!(!m.matches("critical") && m.matches(""));
        let m = Matcher::parse(r#"component=~"database|cache""#).unwrap();
        assert!(m.matches("cache") && !m.matches("cache2"), "anchored");
        let m = Matcher::parse("component!~data.*").unwrap();
        assert!(m.matches("cache") && !m.matches("database"));
        assert_eq!(m.to_string(), r#"component!~"data.*""#);
    }

    #[test]
    fn bad_matchers_say_why() {
        assert_eq!(
            Matcher::parse("severity").unwrap_err(),
            "\"severity\" is not a matcher: write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\""
        );
        assert!(
            Matcher::parse(r#"x=~"(""#)
                .unwrap_err()
                .starts_with("invalid regex \"(\"")
        );
        assert_eq!(
            Matcher::parse(r#"1x="a""#).unwrap_err(),
            "invalid label name \"1x\""
        );
    }

    #[test]
    fn both_wire_forms_read_back() {
        let m: Vec<Matcher> = serde_json::from_str(
            r#"["alertname=\"A\"", {"name":"b","value":"x.*","isRegex":true,"isEqual":false}]"#,
        )
        .unwrap();
        assert_eq!(m[1].op, Op::NotRegex);
        let again: Vec<Matcher> =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }
}
