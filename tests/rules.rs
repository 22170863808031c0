//! The shipped rules: every alert is complete and has its runbook, and `vigil test
//! rules` passes on the shipped tests and the PromQL corpus and fails when it should.
//! (`scripts/test.sh` also runs the same files through promtool.)

use std::path::Path;
use std::process::Command;

use vigil::rules::{Rule, load};

fn test_rules(files: &[&Path]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["test", "rules"])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn yaml_in(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_alert_has_severity_summary_description_and_an_existing_runbook() {
    let mut alerts = 0;
    for (file, severity) in [
        ("rules/critical.yaml", "critical"),
        ("rules/warning.yaml", "warning"),
    ] {
        for group in load(Path::new(file)).unwrap_or_else(|e| panic!("{e}")) {
            for rule in &group.rules {
                let Rule::Alerting(a) = rule else { continue };
                alerts += 1;
                let labels: Vec<&str> = a.labels.iter().map(|(k, _)| k.as_str()).collect();
                assert!(labels.contains(&"severity"), "{} has no severity", a.name);
                let empty = vigil::store::Labels::default();
                let label = |k: &str| {
                    a.labels
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, t)| t.expand(&empty, 0.0))
                };
                assert_eq!(
                    label("severity").as_deref(),
                    Some(severity),
                    "{} in {file}",
                    a.name
                );
                let annotation = |k: &str| {
                    a.annotations
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, t)| t.expand(&empty, 0.0))
                        .unwrap_or_else(|| panic!("{} has no {k}", a.name))
                };
                assert!(!annotation("summary").is_empty());
                assert!(!annotation("description").is_empty());
                let url = annotation("runbook_url");
                let expected = format!("alerts/runbooks/{}.md", a.name);
                assert!(url.ends_with(&expected), "{}: runbook_url {url}", a.name);
                let runbook = std::fs::read_to_string(&expected)
                    .unwrap_or_else(|_| panic!("{expected} is missing"));
                assert!(
                    runbook.contains("## What to check") && runbook.contains("## What to do"),
                    "{expected}"
                );
            }
        }
    }
    assert!(alerts >= 12, "only {alerts} alerts");
}

#[test]
fn shipped_rule_tests_and_the_promql_corpus_pass() {
    let mut files = yaml_in("rules/tests");
    files.extend(yaml_in("tests/promql"));
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = test_rules(&paths);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");
}

#[test]
fn a_failing_test_is_reported_and_exits_1() {
    let (code, out) = test_rules(&[Path::new("tests/rules/failing_test.yaml")]);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED:"), "{out}");
    assert!(out.contains(r#"exp: [up{job="app"} 0]"#), "{out}");
    assert!(out.contains(r#"got: [up{job="app"} 1]"#), "{out}");
}
