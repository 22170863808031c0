//! The shipped rules: every alert is complete and has its runbook, and `vigil test
//! rules` passes on the shipped tests and the PromQL corpus and fails when it should.
//! (`scripts/test.sh` also runs the same files through promtool.)

mod common;

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

/// What promtool finds only at evaluation (two series in one match group) fails the
/// rule the same way at every evaluation, and `/status` says which rule and why, in
/// JSON, text and HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_error_is_shown_in_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "groups:
  - name: g
    rules:
      - record: dup
        expr: vector(1)
        labels: {a: '1'}
      - record: dup
        expr: vector(2)
        labels: {a: '2'}
      - alert: Duplicated
        expr: vector(1) * on() group_left dup
",
    )
    .unwrap();
    let vigil = common::Vigil::start_in(
        dir,
        "rule_files: [rules.yaml]
evaluation_interval: 100ms
probes:
  - name: nothing
    interval: 1s
    tcp:
      address: 127.0.0.1:9
",
    );
    let status = vigil
        .wait_for("the rule's error", |s| {
            s["engine"]["rule_errors"]["g/Duplicated"].is_string()
        })
        .await;
    let err = status["engine"]["rule_errors"]["g/Duplicated"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(
            "found duplicate series for the match group {} on the right hand-side of the operation: [{__name__=\"dup\", a=\""
        ),
        "{err}"
    );
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(
        text.contains("rule g/Duplicated failed: found duplicate series"),
        "{text}"
    );
    let (_, html) = vigil.get("/status?format=html").await;
    assert!(
        html.contains("<b>g/Duplicated</b>: found duplicate series"),
        "{html}"
    );
}

/// `vigil test rules … | head` closes the pipe early: the run ends with its verdict,
/// not a panic about a broken pipe.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["test", "rules", "tests/rules/failing_test.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

/// The config's `external_labels` and `external_url` are what rule templates see as
/// `$externalLabels` and `$externalURL`, as Prometheus's `global.external_labels`
/// and `--web.external-url`.
#[test]
fn templates_see_the_configs_external_labels_and_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "groups:
  - name: g
    rules:
      - alert: Placed
        expr: vector(1)
        annotations:
          where: '{{ $externalLabels.cluster }} {{ $externalLabels }} {{ $externalURL }} {{ pathPrefix }}'
",
    )
    .unwrap();
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0
state_dir: state
external_url: https://vigil.example.com/ops/
external_labels:
  cluster: prod-eu
  region: eu-west-1
rule_files: [rules.yaml]
probes:
  - name: nothing
    tcp:
      address: 127.0.0.1:9
",
    )
    .unwrap();
    let mut config = vigil::config::load(&config).unwrap_or_else(|p| panic!("{p}"));
    let mut store = vigil::store::Store::new(100, 3_600_000);
    let group = &mut config.rules[0];
    group.eval(&mut store, 0);
    let Rule::Alerting(a) = &group.rules[0] else {
        panic!("not an alert")
    };
    let alert = a.active.values().next().expect("the alert is active");
    assert_eq!(
        alert.annotations,
        vec![(
            "where".to_string(),
            "prod-eu map[cluster:prod-eu region:eu-west-1] https://vigil.example.com/ops /ops"
                .to_string()
        )]
    );
}
