//! The dashboards of `dashboards/`: every metric and dimension set they graph is one
//! the shipped config publishes (so a renamed metric cannot leave an empty graph),
//! and `vigil dashboards push` uploads bodies that GetDashboard returns unchanged.

#[path = "common/cloudwatch.rs"]
mod cloudwatch;
mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vigil::dashboards::{self, MetricRef};
use vigil::publish::HEARTBEAT;
use vigil_testkit::{CwAdapter, Moto};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The shipped config, as the ECS task runs it.
fn shipped() -> vigil::config::Config {
    let path = root().join("vigil.example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env: HashMap<String, String> = [
        (
            "VIGIL_SNS_CRITICAL_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:critical",
        ),
        (
            "VIGIL_SNS_WARNING_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:warning",
        ),
        ("VIGIL_HEARTBEAT_URL", "https://hc.example.com/ping"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vigil::config::parse(&path, &text, &env).unwrap_or_else(|p| panic!("{p}"))
}

/// Every (metric, dimension names) the config publishes, the heartbeat included.
fn published(cfg: &vigil::publish::CloudWatchConfig) -> BTreeSet<(String, BTreeSet<String>)> {
    let mut out: BTreeSet<(String, BTreeSet<String>)> = cfg
        .metrics
        .iter()
        .map(|m| (m.name.clone(), m.dimension_names().into_iter().collect()))
        .collect();
    out.insert((
        HEARTBEAT.to_string(),
        cfg.dimensions
            .iter()
            .map(|d| d.name().to_string())
            .collect(),
    ));
    out
}

/// What is wrong with `r` against the config: an unknown metric or dimension set, a
/// percentile of a metric sent without values, or a fixed dimension's value that no
/// Vigil of `environment` sends.
fn problems(
    r: &MetricRef,
    cfg: &vigil::config::Config,
    environment: &str,
    known: &BTreeSet<(String, BTreeSet<String>)>,
) -> Option<String> {
    let cw = cfg.publish.as_ref().unwrap();
    if r.namespace != cw.namespace {
        return Some(format!(
            "namespace {} is not Vigil's {}",
            r.namespace, cw.namespace
        ));
    }
    let names: BTreeSet<String> = r.dimensions.iter().map(|(k, _)| k.clone()).collect();
    if !known.contains(&(r.name.clone(), names.clone())) {
        return Some(format!(
            "{} with dimensions {names:?} is not published",
            r.name
        ));
    }
    // CloudWatch computes percentiles only from values (Values/Counts), not from a
    // statistic set or single values.
    let percentile = r.stat.as_deref().is_some_and(|s| {
        s.starts_with('p') && s[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
    });
    let distribution = cw.metrics.iter().any(|m| {
        m.name == r.name
            && matches!(
                m.stat,
                vigil::publish::config::Stat::Values | vigil::publish::config::Stat::Histogram
            )
    });
    if percentile && !distribution {
        return Some(format!(
            "{} is graphed as {} but published without values: CloudWatch has no percentile of it",
            r.name,
            r.stat.as_deref().unwrap_or("")
        ));
    }
    let probes: Vec<&str> = cfg.probes.iter().map(|p| p.name.as_str()).collect();
    for (k, v) in &r.dimensions {
        let Some(v) = v else { continue };
        let ok = match k.as_str() {
            "Environment" => v == environment,
            "Service" => *v == cw.service,
            "probe" => probes.contains(&v.as_str()),
            _ => true,
        };
        if !ok {
            return Some(format!("{}: dimension {k}={v} is never sent", r.name));
        }
    }
    None
}

#[test]
fn every_graphed_metric_is_one_vigil_publishes() {
    let cfg = shipped();
    let known = published(cfg.publish.as_ref().expect("the example publishes"));
    let rendered = dashboards::render(
        &root().join("dashboards"),
        "production",
        "eu-west-1",
        "123456789012",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stems: Vec<&str> = rendered.iter().map(|d| d.stem.as_str()).collect();
    assert_eq!(stems, ["alerts", "application", "infrastructure"]);
    let mut graphed = BTreeSet::new();
    for d in &rendered {
        let body: Value = serde_json::from_str(&d.body).unwrap();
        let refs = dashboards::metric_refs(&body).unwrap_or_else(|e| panic!("{}: {e}", d.stem));
        assert!(!refs.is_empty(), "{} graphs nothing", d.stem);
        for r in refs {
            if let Some(p) = problems(&r, &cfg, "production", &known) {
                panic!("dashboards/{}.json: {p}", d.stem);
            }
            graphed.insert(r.name.clone());
        }
        assert!(
            !d.body.contains("${"),
            "{} has an unfilled variable",
            d.stem
        );
    }
    // The views the runbook asks for are there.
    for m in [
        "http_requests",
        "http_server_errors",
        "http_request_duration_seconds",
        "vigil_task_memory_used_ratio",
        "vigil_task_cpu_used_ratio",
        "vigil_disk_used_ratio",
        "vigil_postgres_connections",
        "db_query_duration_seconds",
        "cache_requests",
        "vigil_redis_used_memory_bytes",
        "vigil_alerts_firing",
        HEARTBEAT,
    ] {
        assert!(graphed.contains(m), "no dashboard graphs {m}");
    }
}

#[test]
fn the_check_catches_a_renamed_metric_and_a_wrong_dimension() {
    let cfg = shipped();
    let known = published(cfg.publish.as_ref().unwrap());
    let r = |name: &str, dims: &[(&str, &str)]| MetricRef {
        namespace: "PlexWatchTogether".into(),
        name: name.into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect(),
        stat: Some("Sum".into()),
    };
    let env = [("Environment", "production"), ("Service", "watch-together")];
    assert_eq!(
        problems(&r("http_requests", &env), &cfg, "production", &known),
        None
    );
    assert!(problems(&r("http_request_count", &env), &cfg, "production", &known).is_some());
    assert!(problems(&r("http_requests", &env[..1]), &cfg, "production", &known).is_some());
    let mut with_probe = env.to_vec();
    with_probe.push(("probe", "no-such-probe"));
    assert!(
        problems(
            &r("vigil_probe_success", &with_probe),
            &cfg,
            "production",
            &known
        )
        .is_some()
    );
    // A percentile of a metric published as a statistic set graphs nothing.
    let mut p95 = r("vigil_postgres_connections", &env);
    p95.stat = Some("p95".into());
    assert!(problems(&p95, &cfg, "production", &known).is_some());
    p95.name = "http_request_duration_seconds".into();
    assert_eq!(problems(&p95, &cfg, "production", &known), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_dashboards_come_back_unchanged() {
    let moto = Moto::start();
    let adapter = CwAdapter::start(&moto);
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "dashboards",
            "push",
            "--env",
            "staging",
            "--region",
            "us-east-1",
            "--account-id",
            "123456789012",
        ])
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", adapter.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("vigil runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = dashboards::render(
        &root().join("dashboards"),
        "staging",
        "us-east-1",
        "123456789012",
    )
    .unwrap();
    let client = cloudwatch::client(&adapter.endpoint()).await;
    for d in &rendered {
        assert!(stdout.contains(&format!("pushed {}", d.name)), "{stdout}");
        let got = client
            .get_dashboard()
            .dashboard_name(&d.name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetDashboard {}: {e:?}", d.name));
        assert_eq!(got.dashboard_body(), Some(d.body.as_str()), "{}", d.name);
    }
    let puts = adapter
        .calls()
        .into_iter()
        .filter(|c| c.operation == "PutDashboard")
        .count();
    assert_eq!(puts, rendered.len());
    // A missing dashboard is CloudWatch's typed error, through the adapter.
    let missing = client
        .get_dashboard()
        .dashboard_name("staging-nope")
        .send()
        .await;
    let e = missing.expect_err("no such dashboard");
    assert!(
        e.into_service_error().is_dashboard_not_found_error(),
        "typed error"
    );
}
