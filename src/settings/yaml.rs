//! The one way Vigil reads a YAML file (the config, the routing file, rule files):
//! the text read whole ([`read`]), `${VAR}` expanded by the parser where a file
//! takes the environment and refused inside quotes ([`check_quoted_references`]),
//! deserialized with serde-saphyr ([`from_str`]), then validated into what the
//! daemon runs, every problem collected before any is reported ([`parse`]).

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Collector, Problems};

/// The text of `path`, or the problem "cannot read the {what}: …" about it.
pub fn read(path: &Path, what: &str) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        let mut c = Collector::new(path);
        c.at_line_col(0, 0, format!("cannot read the {what}: {e}"));
        c.finish().expect_err("a problem was recorded")
    })
}

/// serde-saphyr's options for Vigil's files: no snippets in errors (ours name
/// `file:line:col`), and `${VAR}` from `env` when the file takes the environment.
pub fn options(env: Option<&HashMap<String, String>>) -> serde_saphyr::Options {
    let options = serde_saphyr::options! { with_snippet: false };
    match env {
        Some(env) => options.with_properties(env.clone()),
        None => options,
    }
}

/// `text` deserialized into `R`. With an `env`, `${VAR}` is expanded and a
/// reference inside quotes (which would stay literal) is a problem in `c`.
pub fn from_str<R: DeserializeOwned>(
    text: &str,
    env: Option<&HashMap<String, String>>,
    c: &mut Collector,
) -> Result<R, serde_saphyr::Error> {
    if env.is_some() {
        check_quoted_references(text, c);
    }
    serde_saphyr::from_str_with_options(text, options(env))
}

/// The skeleton of every file reader: `text` (named `path` in problems)
/// deserialized into `R` and validated by `build`; when the YAML does not load,
/// `unreadable` says where. Every problem is returned at once, in file order.
pub fn parse<R: DeserializeOwned, T>(
    path: &Path,
    text: &str,
    env: Option<&HashMap<String, String>>,
    build: impl FnOnce(R, &mut Collector) -> Option<T>,
    unreadable: impl FnOnce(&serde_saphyr::Error, &mut Collector),
) -> Result<T, Problems> {
    let mut c = Collector::new(path);
    let built = match from_str::<R>(text, env, &mut c) {
        Ok(raw) => build(raw, &mut c),
        Err(e) => {
            unreadable(&e, &mut c);
            None
        }
    };
    c.finish()?;
    Ok(built.expect("a file without problems was built"))
}

/// `${VAR}` is expanded only in unquoted values; inside quotes it would stay literal
/// and the probe would fail at 3 a.m. with a confusing error, so it is refused here.
pub(crate) fn check_quoted_references(text: &str, c: &mut Collector) {
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut quote: Option<char> = None;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (i, &(byte, ch)) in chars.iter().enumerate() {
            match (quote, ch) {
                (None, '#') if i == 0 || chars[i - 1].1 == ' ' => break,
                (None, '"' | '\'') => quote = Some(ch),
                (Some(q), _) if ch == q => quote = None,
                (Some(_), '$')
                    if line[byte..].starts_with("${") && (i == 0 || chars[i - 1].1 != '$') =>
                {
                    let name: String = line[byte + 2..]
                        .chars()
                        .take_while(|&c| c != '}' && c != ':')
                        .collect();
                    c.at_line_col(
                        n as u32 + 1,
                        i as u32 + 1,
                        format!("${{{name}}} inside a quoted value is not expanded; remove the quotes around the value"),
                    );
                }
                _ => {}
            }
        }
    }
}
