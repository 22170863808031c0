//! Label sets: sorted by name, `__name__` among them, compared and hashed whole.

use std::fmt;
use std::sync::Arc;

/// The label holding the metric name.
pub(crate) const NAME: &str = "__name__";

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sorted set of labels. Cloning is cheap (shared), and so is deriving one label
/// set from another: names and values are shared strings, never copied.
#[derive(Clone, Eq, PartialOrd, Ord, Default)]
pub struct Labels(Arc<[(Arc<str>, Arc<str>)]>);

impl std::hash::Hash for Labels {
    /// The hash of the pairs, consistent with `eq` (which only adds a shortcut).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        // Clones of one label set share their slice: no string to compare.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped (an
    /// empty label is the same as no label in Prometheus).
    pub fn new<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Labels {
        let mut v: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.as_ref().is_empty())
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        Labels(v.into())
    }

    /// A metric name and labels.
    pub fn from_pairs(name: &str, pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied().chain([(NAME, name)]))
    }

    /// The labels as owned name → value pairs, for views and pages.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The value of label `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        // Label sets are small: a scan that compares lengths first beats a binary
        // search whose every step is a string comparison.
        if self.0.len() <= 8 {
            return self
                .0
                .iter()
                .find(|(k, _)| k.len() == name.len() && **k == *name)
                .map(|(_, v)| &**v)
                .unwrap_or("");
        }
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .map(|i| &*self.0[i].1)
            .unwrap_or("")
    }

    /// The metric name, or "".
    pub fn name(&self) -> &str {
        self.get(NAME)
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// A copy without the labels for which `drop` is true.
    pub fn without(&self, mut drop: impl FnMut(&str) -> bool) -> Labels {
        Labels(self.0.iter().filter(|(k, _)| !drop(k)).cloned().collect())
    }

    /// Prometheus's `labels.Labels.String()`: every label, the name included, as
    /// `{__name__="up", job="app"}` (the form its error messages quote).
    pub fn prometheus_string(&self) -> String {
        let pairs: Vec<String> = self
            .iter()
            .map(|(k, v)| {
                let q = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
                    .replace('\t', "\\t")
                    .replace('\r', "\\r");
                format!("{k}=\"{q}\"")
            })
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Labels {
        if self.get(NAME).is_empty() {
            self.clone()
        } else {
            self.without(|k| k == NAME)
        }
    }

    /// A copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        Labels::new(
            self.iter()
                .filter(|(k, _)| *k != name)
                .chain([(name, value)]),
        )
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name())?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(
                f,
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )?;
        }
        write!(f, "}}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A label set is a JSON object (`{"job": "app"}`), as in Prometheus's APIs.
impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m: std::collections::BTreeMap<String, String> = serde::Deserialize::deserialize(d)?;
        Ok(Labels::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduplicated_and_printed_like_prometheus() {
        let l = Labels::new([("job", "app"), (NAME, "up"), ("empty", ""), ("a", "x\"y")]);
        assert_eq!(l.to_string(), r#"up{a="x\"y", job="app"}"#);
        assert_eq!(l.get("job"), "app");
        assert_eq!(l.get("empty"), "");
        assert_eq!(l.without_name().to_string(), r#"{a="x\"y", job="app"}"#);
        assert_eq!(l.with("job", "").to_string(), r#"up{a="x\"y"}"#);
    }
}
