//! Collecting every problem of a config file, each with its `file:line:col`.

use std::fmt;
use std::path::Path;

use serde_saphyr::Location;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line; 0 when the problem is about the file as a whole.
    pub line: u32,
    /// 1-based column; 0 when the problem is about the file as a whole.
    pub column: u32,
    /// What is wrong, and where it helps, what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Every problem found in a config, in file order. Displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems {
    /// The problems, sorted by position once loading is done.
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The collector that validation code writes into.
#[derive(Debug)]
pub struct Collector {
    /// The file name used in every problem.
    file: String,
    /// What has been found so far.
    found: Vec<Problem>,
}

impl Collector {
    /// A collector for problems in `file`.
    pub fn new(file: &Path) -> Collector {
        Collector {
            file: file.display().to_string(),
            found: Vec::new(),
        }
    }

    /// Records a problem at a YAML location (as kept by `Spanned`).
    pub fn at(&mut self, location: Location, message: impl Into<String>) {
        self.at_line_col(location.line() as u32, location.column() as u32, message);
    }

    /// Records a problem at a line and column.
    pub fn at_line_col(&mut self, line: u32, column: u32, message: impl Into<String>) {
        let problem = Problem {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        };
        if !self.found.contains(&problem) {
            self.found.push(problem);
        }
    }

    /// Records a deserialization error from serde-saphyr, stripped of its own
    /// "at line X, column Y" suffix since ours comes first.
    pub fn yaml(&mut self, error: &serde_saphyr::Error) {
        let text = error.to_string();
        let message = strip_location_suffix(&text);
        let (line, column) = error
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((0, 0));
        self.at_line_col(line, column, tidy(message));
    }

    /// How many problems have been found so far.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether nothing has been found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems in file order, or `Ok` when there are none.
    pub fn finish(mut self) -> Result<(), Problems> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by_key(|p| (p.line, p.column));
        Err(Problems { list: self.found })
    }
}

fn strip_location_suffix(text: &str) -> &str {
    let first_line = text.lines().next().unwrap_or(text);
    match first_line.rfind(" at line ") {
        Some(i) => &first_line[..i],
        None => first_line,
    }
}

/// Rewords the parser's developer-oriented messages for the person editing the file.
fn tidy(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return format!("key `{key}` appears twice in the same mapping");
    }
    if let Some(rest) = message.strip_prefix("missing property `") {
        let name = rest.trim_end_matches('`');
        return format!(
            "environment variable {name} is not set; set it, or write ${{{name}:-default}} to give a default"
        );
    }
    match message {
        "expected sequence start" => "expected a list here (items start with `- `)".to_string(),
        "invalid boolean" => "expected true or false".to_string(),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_parsers_location_and_keeps_the_message() {
        assert_eq!(
            strip_location_suffix("unknown field `x`, expected `a` at line 3, column 5"),
            "unknown field `x`, expected `a`"
        );
        assert_eq!(strip_location_suffix("no location"), "no location");
    }

    #[test]
    fn problems_sort_by_position_and_print_one_per_line() {
        let mut c = Collector::new(Path::new("v.yaml"));
        c.at_line_col(9, 3, "second");
        c.at_line_col(2, 7, "first");
        c.at_line_col(2, 7, "first");
        let text = c.finish().unwrap_err().to_string();
        assert_eq!(text, "v.yaml:2:7: first\nv.yaml:9:3: second");
    }
}
