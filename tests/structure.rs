//! The crate's shape: no import circles between its files, and a settings toolkit
//! that imports nothing of Vigil's.
//!
//! Each file of `src/` is a module (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`);
//! a path it names (`crate::x::y`, `super::y`, `use crate::{x, y::z}`), outside
//! comments and its tests, is an import of the longest module that path starts with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/` and the text of its file (comments and tests left out).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix("src").unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            out.insert(
                parts.join("::"),
                code(&std::fs::read_to_string(&path).unwrap()),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// `text` without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `text` names after `prefix` (`crate::` or `super::`), braces expanded
/// one level: `crate::{a, b::c}` names `a` and `b::c`.
fn paths(text: &str, prefix: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let head: String = rest.chars().take_while(|&c| ident(c)).collect();
        let after = &rest[head.len()..];
        if let Some(inner) = after
            .strip_prefix('{')
            .or_else(|| head.is_empty().then_some(()).and(rest.strip_prefix('{')))
        {
            let end = inner.find('}').unwrap_or(inner.len());
            for item in inner[..end].split(',') {
                let item: String = item.trim().chars().take_while(|&c| ident(c)).collect();
                if !item.is_empty() {
                    out.push(format!("{head}{item}"));
                }
            }
        }
        let head = head.trim_end_matches(':');
        if !head.is_empty() {
            out.push(head.to_string());
        }
    }
    out
}

/// Which modules each module imports.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (module, text) in modules {
        let mut to = BTreeSet::new();
        for p in paths(text, "crate::") {
            to.extend(resolve(&p));
        }
        let parent: Vec<&str> = module.split("::").collect();
        let parent = parent[..parent.len() - 1].join("::");
        for p in paths(text, "super::") {
            let full = if parent.is_empty() {
                p
            } else {
                format!("{parent}::{p}")
            };
            to.extend(resolve(&full));
        }
        to.remove(module);
        edges.insert(module.clone(), to);
    }
    edges
}

/// An import circle of `edges`, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut done, &mut Vec::new()))
}

#[test]
fn the_reader_sees_imports_and_circles() {
    let modules: BTreeMap<String, String> = [
        ("a", "use crate::b::{x, c::Y};\n// crate::d is a comment\n"),
        ("b", "fn f() { super::a::g() }"),
        ("b::c", ""),
        ("d", "#[cfg(test)]\nmod tests { use crate::a; }"),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_string(), code(t)))
    .collect();
    let edges = imports(&modules);
    assert_eq!(edges["a"], BTreeSet::from(["b".into(), "b::c".into()]));
    assert_eq!(edges["b"], BTreeSet::from(["a".to_string()]));
    assert!(edges["d"].is_empty(), "tests are left out");
    assert_eq!(
        circle(&edges).unwrap(),
        ["a", "b", "a"].map(String::from).to_vec()
    );
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let modules = modules();
    assert!(modules.len() > 40, "found only {} modules", modules.len());
    let edges = imports(&modules);
    assert_eq!(
        circle(&edges),
        None,
        "an import circle; shared types belong in a module both import"
    );
}

#[test]
fn the_settings_toolkit_imports_nothing_of_vigils() {
    let modules = modules();
    let edges = imports(&modules);
    for (module, to) in &edges {
        if module == "settings" || module.starts_with("settings::") {
            let outside: Vec<_> = to.iter().filter(|t| !t.starts_with("settings")).collect();
            assert!(outside.is_empty(), "{module} imports {outside:?}");
        }
        if !module.starts_with("config") && module != "daemon" {
            assert!(
                !to.iter()
                    .any(|t| t == "config" || t.starts_with("config::")),
                "{module} imports config: config sits above the kinds"
            );
        }
    }
}
