//! CloudWatch publishing end to end: the real AWS SDK (Smithy RPC v2 CBOR) against
//! `moto_server` behind `scripts/cw-adapter.py`, read back with GetMetricStatistics,
//! GetMetricData and ListMetrics; the daemon through a CloudWatch outage; EMF lines
//! and the ECS task metadata endpoint served by a local HTTP server.

#[path = "common/cloudwatch.rs"]
mod cloudwatch;
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use chrono::Utc;
use common::{DEADLINE, Vigil};
use serde_json::{Value, json};
use tokio::sync::watch;
use vigil::publish::AnySink;
use vigil::publish::cloudwatch::CloudWatchSink;
use vigil::publish::{self, CloudWatchConfig, Place, PublishSettings, PublishView};
use vigil::store::{Labels, Store};
use vigil::supervise::{Stages, Supervisor};
use vigil_testkit::{CwAdapter, Moto, Redis};

/// `publish:` settings from YAML, validated.
fn settings(yaml: &str) -> CloudWatchConfig {
    let s: PublishSettings = serde_saphyr::from_str(yaml).expect("valid YAML");
    let mut c = vigil::settings::Collector::new(Path::new("test.yaml"));
    match s.validate(&mut c, vigil::store::DEFAULT_RETENTION) {
        Some(cfg) => cfg,
        None => panic!("invalid settings: {:?}", c.finish()),
    }
}

fn place() -> Place {
    Place {
        environment: "test".into(),
        service: "svc".into(),
        task_id: "t1".into(),
        cluster: "local".into(),
        availability_zone: "local".into(),
        task_definition: "local".into(),
    }
}

/// Waits until the publisher's view satisfies `ok`.
async fn wait_view(
    view: &mut watch::Receiver<PublishView>,
    what: &str,
    ok: impl Fn(&PublishView) -> bool,
) {
    let r = tokio::time::timeout(DEADLINE, view.wait_for(|v| ok(v)))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(r, "gave up waiting for {what}: {:?}", *view.borrow());
}

/// SampleCount, Sum, Minimum and Maximum of one metric around `t` (ms).
async fn statistics(
    client: &aws_sdk_cloudwatch::Client,
    ns: &str,
    name: &str,
    dims: &[(&str, &str)],
    t: i64,
) -> (f64, f64, f64, f64) {
    let r = client
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(name)
        .set_dimensions(Some(
            dims.iter()
                .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                .collect(),
        ))
        .start_time(AwsTime::from_millis(t - 120_000))
        .end_time(AwsTime::from_millis(t + 120_000))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .expect("GetMetricStatistics");
    let points = r.datapoints();
    assert_eq!(points.len(), 1, "{name} {dims:?}: {points:?}");
    let p = &points[0];
    (
        p.sample_count().unwrap(),
        p.sum().unwrap(),
        p.minimum().unwrap(),
        p.maximum().unwrap(),
    )
}

fn append(store: &mut Store, name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) {
    let l = Labels::from_pairs(name, labels);
    for &(t, v) in points {
        store.append(&l, t, v).expect("append");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_samples_read_back_exactly_with_their_dimensions() {
    let moto = Moto::start();
    let adapter = CwAdapter::start(&moto);
    let client = cloudwatch::client(&adapter.endpoint()).await;
    let cfg = settings(
        r#"cloudwatch:
  namespace: VigilExact
  interval: 1s
  service: svc
  metrics:
    - series: probe_latency
      stat: summary
      unit: Seconds
      labels: [probe]
    - series: check_seconds
      stat: values
      unit: Seconds
    - series: req_seconds
      stat: histogram
      unit: Seconds
    - series: requests_total
      stat: increase
      unit: Count
      labels: [status]
"#,
    );
    let to = Utc::now().timestamp_millis() / 1000 * 1000;
    let from = to - 60_000;
    let (before, a, b, c) = (from - 5_000, from + 10_000, from + 20_000, from + 30_000);
    let mut store = Store::new(1_000, 3_600_000);
    append(
        &mut store,
        "probe_latency",
        &[("probe", "db")],
        &[(before, 9.0), (a, 0.25), (b, 0.5), (c, 2.0)],
    );
    append(
        &mut store,
        "probe_latency",
        &[("probe", "cache")],
        &[(b, 1.0)],
    );
    append(
        &mut store,
        "check_seconds",
        &[],
        &[
            (a, 0.125),
            (a + 1, 0.125),
            (b, 0.5),
            (c, 2.0),
            (c + 1, 0.125),
        ],
    );
    for (le, start, end) in [
        ("0.25", 10.0, 14.0),
        ("1", 10.0, 20.0),
        ("+Inf", 10.0, 22.0),
    ] {
        append(
            &mut store,
            "req_seconds_bucket",
            &[("le", le)],
            &[(before, start), (c, end)],
        );
    }
    append(
        &mut store,
        "requests_total",
        &[("status", "200")],
        &[(before, 100.0), (a, 110.0), (c, 130.0)],
    );
    append(
        &mut store,
        "requests_total",
        &[("status", "500")],
        &[(before, 5.0), (a, 2.0), (c, 4.0)],
    );

    let sink = Arc::new(AnySink::CloudWatch(CloudWatchSink::with_client(
        &cfg,
        client.clone(),
    )));
    let mut stages = Stages::new(Supervisor::new());
    let publisher = publish::start(
        cfg,
        place(),
        sink,
        cloudwatch::fake(store, from, to),
        std::time::Duration::ZERO,
        &mut stages,
    );
    let mut view = publisher.view.clone();
    // 2 summaries, 1 distribution, 1 histogram, 2 increases, the heartbeat.
    wait_view(&mut view, "the first flush to be sent", |v| {
        v.datums_sent >= 7 && v.queued == 0
    })
    .await;
    let sent_at = view
        .borrow()
        .last_success
        .expect("a success")
        .timestamp_millis();

    let env = [("Environment", "test"), ("Service", "svc")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        env.iter().chain(extra).copied().collect()
    };
    assert_eq!(
        statistics(
            &client,
            "VigilExact",
            "probe_latency",
            &with(&[("probe", "db")]),
            sent_at
        )
        .await,
        (3.0, 2.75, 0.25, 2.0),
        "the sample before the window is not sent"
    );
    assert_eq!(
        statistics(
            &client,
            "VigilExact",
            "probe_latency",
            &with(&[("probe", "cache")]),
            sent_at
        )
        .await,
        (1.0, 1.0, 1.0, 1.0)
    );
    assert_eq!(
        statistics(&client, "VigilExact", "check_seconds", &with(&[]), sent_at).await,
        (5.0, 2.875, 0.125, 2.0)
    );
    // Buckets 0.25: 4, 1: 6, +Inf: 2 (counted at the highest finite bound, 1 s).
    assert_eq!(
        statistics(&client, "VigilExact", "req_seconds", &with(&[]), sent_at).await,
        (12.0, 4.0 * 0.25 + 8.0, 0.25, 1.0)
    );
    assert_eq!(
        statistics(
            &client,
            "VigilExact",
            "requests",
            &with(&[("status", "200")]),
            sent_at
        )
        .await,
        (1.0, 30.0, 30.0, 30.0)
    );

    // GetMetricData: the 500s counter went 5 → 2 (a restart) → 4: an increase of 4.
    let query = MetricDataQuery::builder()
        .id("errors")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("VigilExact")
                        .metric_name("requests")
                        .set_dimensions(Some(
                            with(&[("status", "500")])
                                .iter()
                                .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .period(60)
                .stat("Sum")
                .build(),
        )
        .build();
    let data = client
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(AwsTime::from_millis(sent_at - 120_000))
        .end_time(AwsTime::from_millis(sent_at + 120_000))
        .send()
        .await
        .expect("GetMetricData");
    let values: Vec<f64> = data
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().to_vec())
        .collect();
    assert_eq!(values, vec![4.0]);

    // The dimensions are exactly the configured ones.
    let listed = client
        .list_metrics()
        .namespace("VigilExact")
        .metric_name("requests")
        .send()
        .await
        .expect("ListMetrics");
    let mut sets: Vec<Vec<(String, String)>> = listed
        .metrics()
        .iter()
        .map(|m| {
            m.dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or("").to_string(),
                        d.value().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .collect();
    sets.sort();
    let expected = |status: &str| {
        vec![
            ("Environment".to_string(), "test".to_string()),
            ("Service".to_string(), "svc".to_string()),
            ("status".to_string(), status.to_string()),
        ]
    };
    assert_eq!(sets, vec![expected("200"), expected("500")]);
    let heartbeat = statistics(
        &client,
        "VigilExact",
        "vigil_heartbeat",
        &with(&[]),
        sent_at,
    )
    .await;
    assert!(heartbeat.0 >= 1.0 && heartbeat.2 == 1.0, "{heartbeat:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_2500_series_takes_exactly_three_calls_under_1_mb() {
    let moto = Moto::start();
    let adapter = CwAdapter::start(&moto);
    let client = cloudwatch::client(&adapter.endpoint()).await;
    let cfg = settings(
        "cloudwatch:\n  namespace: VigilBatch\n  interval: 1s\n  metrics:\n    - series: load\n      stat: last\n      labels: [instance]\n",
    );
    let to = Utc::now().timestamp_millis();
    let mut store = Store::new(10_000, 3_600_000);
    // 2 499 series and the heartbeat: 2 500 datums.
    for i in 0..2_499 {
        let instance = format!("instance-{i:04}-with-a-longer-name-than-most-hosts-have");
        append(
            &mut store,
            "load",
            &[("instance", &instance)],
            &[(to - 1_000, i as f64)],
        );
    }
    let sink = Arc::new(AnySink::CloudWatch(CloudWatchSink::with_client(
        &cfg,
        client.clone(),
    )));
    let mut stages = Stages::new(Supervisor::new());
    let publisher = publish::start(
        cfg,
        place(),
        sink,
        cloudwatch::fake(store, to - 60_000, to),
        std::time::Duration::ZERO,
        &mut stages,
    );
    let mut view = publisher.view.clone();
    wait_view(&mut view, "2 500 datums sent", |v| {
        v.datums_sent >= 2_500 && v.queued == 0
    })
    .await;
    let calls: Vec<_> = adapter
        .calls()
        .into_iter()
        .filter(|c| c.operation == "PutMetricData")
        .collect();
    let datums: Vec<Option<usize>> = calls.iter().take(3).map(|c| c.datums).collect();
    assert_eq!(
        datums,
        vec![Some(1_000), Some(1_000), Some(500)],
        "{calls:#?}"
    );
    for c in &calls {
        assert_eq!(c.status, 200, "{c:?}");
        assert!(c.body_bytes < 1_000_000, "{c:?}");
        if c.body_bytes >= 10_240 {
            assert_eq!(
                c.content_encoding.as_deref(),
                Some("gzip"),
                "large bodies are gzipped: {c:?}"
            );
            assert!(c.wire_bytes < c.body_bytes);
        }
    }
    let v = view.borrow().clone();
    assert_eq!((v.dropped, v.errors), (0, 0));
}

/// Serves `/metrics` with `n` gauge series, `load{i="…"}`.
async fn metrics_server(n: usize) -> std::net::SocketAddr {
    let body: String = (0..n).map(|i| format!("load{{i=\"{i}\"}} {i}\n")).collect();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { body.clone() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_outage_drops_counted_datums_while_probing_and_paging_go_on() {
    let moto = Moto::start();
    let mut adapter = CwAdapter::start(&moto);
    let mut redis = Redis::start();
    let topic = moto.create_topic("us-east-1", "critical");
    let scrape = metrics_server(600).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "groups:\n  - name: g\n    rules:\n      - alert: CacheDown\n        expr: vigil_probe_success{probe=\"cache\"} == 0\n        labels:\n          severity: critical\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routing.yaml"),
        format!("receivers:\n  - name: critical\n    sns:\n      topic_arn: {topic}\nroute:\n  receiver: critical\n  group_by: ['...']\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 500ms\n  timeout: 2s\n"),
    )
    .unwrap();
    let body = format!(
        r#"rule_files: [rules.yaml]
routing: routing.yaml
evaluation_interval: 1s
scrape:
  - job: load
    url: http://{scrape}/metrics
    interval: 1s
probes:
  - name: cache
    interval: 200ms
    timeout: 150ms
    redis:
      url: {redis}
publish:
  cloudwatch:
    namespace: VigilOutage
    interval: 1s
    max_queued: 1000
    metrics:
      - series: load
        stat: last
        labels: [i]
      - series: vigil_probe_success
        stat: summary
        labels: [probe]
"#,
        redis = redis.url()
    );
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", adapter.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let vigil = Vigil::start_with_env(dir, &body, &env);
    let n = |s: &Value, k: &str| s["publishing"][k].as_u64().unwrap_or(0);
    vigil
        .wait_for("a publish with the scraped series", |s| {
            n(s, "datums_sent") >= 600
        })
        .await;
    assert!(
        adapter
            .calls()
            .iter()
            .any(|c| c.operation == "PutMetricData" && c.status == 200),
        "the SDK reached CloudWatch through AWS_ENDPOINT_URL_CLOUDWATCH"
    );

    let down_at = Utc::now();
    adapter.stop();
    vigil
        .wait_for("the outage to show in /status", |s| {
            s["publishing"]["last_error"]["at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
                .is_some_and(|t| t >= down_at)
        })
        .await;
    // Probing, evaluation and paging go on.
    redis.kill();
    let start = Instant::now();
    while moto.messages(&topic).is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "no page during the outage:\n{}",
            vigil.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = &moto.messages(&topic)[0];
    assert!(
        page.subject.starts_with("ALARM: \"test-CacheDown"),
        "{page:?}"
    );
    let s = vigil
        .wait_for("the queue to overflow and count its drops", |s| {
            n(s, "dropped") > 0
        })
        .await;
    assert!(n(&s, "queued") <= 1_000, "{s:#}");
    let (_, text) = vigil.get("/metrics").await;
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vigil_publish_dropped_total "))
        .and_then(|v| v.parse().ok())
        .expect("vigil_publish_dropped_total on /metrics");
    assert!(dropped > 0.0, "{text}");

    adapter.restart();
    let back_at = Utc::now();
    let s = vigil
        .wait_for("publishing to resume and drain the queue", |s| {
            s["publishing"]["last_success"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
                .is_some_and(|t| t > back_at)
                && n(s, "queued") < 1_000
        })
        .await;
    assert!(n(&s, "errors") >= 1, "{s:#}");
    // What was measured during the outage (the cache down) arrives after it.
    let client = cloudwatch::client(&adapter.endpoint()).await;
    let start = Instant::now();
    loop {
        let r = client
            .get_metric_statistics()
            .namespace("VigilOutage")
            .metric_name("vigil_probe_success")
            .dimensions(Dimension::builder().name("probe").value("cache").build())
            .start_time(AwsTime::from_millis(down_at.timestamp_millis() - 600_000))
            .end_time(AwsTime::from_millis(Utc::now().timestamp_millis() + 60_000))
            .period(3600)
            .statistics(Statistic::Minimum)
            .send()
            .await
            .expect("GetMetricStatistics");
        if r.datapoints().iter().any(|p| p.minimum() == Some(0.0)) {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the outage's probe results never arrived: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Fargate task metadata endpoint (v4) with the documented shapes: the task uses
/// 95 % of its 1 GiB, and 0.25 vCPU of its 0.5 between two polls 10 s apart.
async fn ecs_endpoint() -> std::net::SocketAddr {
    let polls = Arc::new(AtomicU64::new(0));
    let task = json!({
        "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/prod/bfa2636268144d039771334145e490c5",
        "Family": "watch-together", "Revision": "7", "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.5, "Memory": 1024},
        "AvailabilityZone": "us-east-1d", "LaunchType": "FARGATE",
        "Containers": [
            {"DockerId": "bfa26-1", "Name": "app", "Limits": {"CPU": 2}, "Type": "NORMAL"},
            {"DockerId": "bfa26-2", "Name": "vigil", "Limits": {"CPU": 2}, "Type": "NORMAL"}
        ]
    });
    let stats = move || {
        let n = polls.fetch_add(1, Ordering::SeqCst) as i64;
        let read = (chrono::DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
            + chrono::Duration::seconds(10 * n))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let container = |usage: f64, cpu: f64| {
            json!({
                "read": read, "preread": "0001-01-01T00:00:00Z",
                "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "online_cpus": 2, "system_cpu_usage": 0},
                "precpu_stats": {"cpu_usage": {"total_usage": 0}},
                "memory_stats": {"usage": usage, "max_usage": usage, "limit": 9223372036854772000u64,
                                 "stats": {"inactive_file": 24.0 * 1_048_576.0, "cache": 1}}
            })
        };
        json!({
            "bfa26-1": container(900.0 * 1_048_576.0, n as f64 * 2.0e9),
            "bfa26-2": container(96.8 * 1_048_576.0, n as f64 * 0.5e9),
        })
    };
    let app = axum::Router::new()
        .route(
            "/task",
            axum::routing::get(move || {
                let t = task.clone();
                async move { axum::Json(t) }
            }),
        )
        .route(
            "/task/stats",
            axum::routing::get(move || {
                let s = stats();
                async move { axum::Json(s) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ecs_the_task_is_named_measured_alerted_on_and_written_as_emf() {
    let ecs = ecs_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "groups:\n  - name: g\n    rules:\n      - alert: TaskMemoryExhausted\n        expr: vigil_task_memory_used_ratio > 0.9\n        labels:\n          severity: critical\n",
    )
    .unwrap();
    let body = r#"rule_files: [rules.yaml]
evaluation_interval: 1s
probes:
  - name: disk
    disk:
      paths: [/]
publish:
  cloudwatch:
    mode: emf
    namespace: VigilEmf
    interval: 1s
    dimensions: [Environment, Service, TaskId]
    metrics:
      - series: vigil_task_memory_used_ratio
        stat: summary
      - series: vigil_task_cpu_used_ratio
        stat: summary
      - series: vigil_container_memory_used_bytes
        stat: last
        unit: Bytes
        labels: [container]
"#;
    let vigil = Vigil::start_with_env(
        dir,
        body,
        &[("ECS_CONTAINER_METADATA_URI_V4", &format!("http://{ecs}"))],
    );
    let s = vigil
        .wait_for("the task in /status", |s| {
            s["task"]["cpu_used_ratio"].is_number()
        })
        .await;
    let task = &s["task"]["task"];
    assert_eq!(task["task_id"], "bfa2636268144d039771334145e490c5");
    assert_eq!(task["cluster"], "prod");
    assert_eq!(task["availability_zone"], "us-east-1d");
    let memory = s["task"]["memory_used_ratio"].as_f64().unwrap();
    assert!((memory - (876.0 + 72.8) / 1024.0).abs() < 1e-9, "{memory}");
    let cpu = s["task"]["cpu_used_ratio"].as_f64().unwrap();
    assert!(
        (cpu - 0.5).abs() < 1e-9,
        "2.5 s of CPU in 10 s on 0.5 vCPU: {cpu}"
    );
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(text.contains("task bfa2636268144d039771334145e490c5 (watch-together:7) in cluster prod, us-east-1d: memory 93 %, CPU 50 %"), "{text}");
    vigil
        .wait_for_alerts("TaskMemoryExhausted to fire", |a| {
            a.iter()
                .any(|x| x["name"] == "TaskMemoryExhausted" && x["state"] == "firing")
        })
        .await;
    let (_, metrics) = vigil.get("/metrics").await;
    assert!(
        metrics.contains("vigil_container_memory_used_bytes{container=\"app\"} 918552576\n"),
        "{metrics}"
    );

    // EMF: every line valid; the task's id as a dimension; the figures as measured.
    let start = Instant::now();
    let lines = loop {
        let out = vigil.stdout_text();
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        let has = |m: &str| lines.iter().any(|l| l.contains(&format!("\"{m}\"")));
        if has("vigil_task_cpu_used_ratio")
            && has("vigil_heartbeat")
            && has("vigil_container_memory_used_bytes")
        {
            break lines;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no EMF lines yet:\n{out}\nlog:\n{}",
            vigil.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for l in &lines {
        vigil::publish::emf::validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "VigilEmf");
        assert_eq!(v["TaskId"], "bfa2636268144d039771334145e490c5", "{l}");
        assert_eq!(v["Environment"], "test");
        if let Some(m) = v.get("vigil_task_memory_used_ratio") {
            let values: Vec<f64> = match m {
                Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                x => vec![x.as_f64().unwrap()],
            };
            assert!(values.iter().all(|x| (x - memory).abs() < 1e-9), "{l}");
        }
    }
    let app = lines
        .iter()
        .find(|l| l.contains("\"container\":\"app\""))
        .expect("a line per container");
    let v: Value = serde_json::from_str(app).unwrap();
    assert_eq!(
        v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Environment", "Service", "TaskId", "container"]])
    );
    assert_eq!(v["vigil_container_memory_used_bytes"], json!(918552576.0));
}

#[test]
fn a_stop_flushes_the_last_interval_before_exiting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = r#"probes:
  - name: disk
    interval: 200ms
    disk:
      paths: [/]
publish:
  cloudwatch:
    mode: emf
    interval: 30m
    metrics:
      - series: vigil_probe_success
        stat: summary
        labels: [probe]
"#;
    let vigil = Vigil::start_in(tempfile::tempdir().unwrap(), body);
    rt.block_on(vigil.wait_for("five checks", |s| {
        s["components"][0]["checks_total"].as_u64() >= Some(5)
    }));
    assert_eq!(
        vigil.stdout_text(),
        "",
        "nothing is flushed before the half hour"
    );
    let log = vigil.log.clone();
    let dir = vigil.stop();
    let out = std::fs::read_to_string(dir.path().join("vigil.out")).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| {
            vigil::publish::emf::validate(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            serde_json::from_str(l).unwrap()
        })
        .collect();
    assert!(
        lines.iter().any(|v| v["vigil_heartbeat"] == json!(1.0)),
        "{out}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let successes: usize = lines
        .iter()
        .filter_map(|v| v.get("vigil_probe_success"))
        .map(|v| v.as_array().map_or(1, Vec::len))
        .sum();
    assert!(
        successes >= 5,
        "every check of the unfinished interval is sent: {out}"
    );
}
