//! PutMetricData calls and bytes per flush (one flush a minute at the default
//! interval) for 100, 1 000 and 10 000 series, against the floor of
//! ⌈datums / 1 000⌉ calls; the same datums as EMF lines; and the monthly cost that
//! follows from CloudWatch's published prices. Real SDK, real moto behind the CBOR
//! adapter. Run through `bench/publishing.sh`; results in `bench/README.md`.

#[path = "../tests/common/cloudwatch.rs"]
mod cloudwatch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use vigil::publish::AnySink;
use vigil::publish::cloudwatch::CloudWatchSink;
use vigil::publish::{self, Place, PublishSettings};
use vigil::store::{Labels, Store};
use vigil::supervise::{Stages, Supervisor};
use vigil_testkit::{CwAdapter, Moto};

/// Minutes in a month as AWS bills them (730 hours).
const MINUTES_PER_MONTH: f64 = 730.0 * 60.0;
/// us-east-1, per metric-month: the first 10 000 metrics, then the next 240 000.
const METRIC_TIERS: [(f64, f64); 2] = [(10_000.0, 0.30), (240_000.0, 0.10)];
/// Per 1 000 PutMetricData requests.
const API_PER_1000: f64 = 0.01;
/// Per GB of CloudWatch Logs ingested (EMF), and the bytes CloudWatch Logs adds to
/// each event when it counts them.
const LOGS_PER_GB: f64 = 0.50;
const LOG_EVENT_OVERHEAD: usize = 26;

fn metric_cost(metrics: f64) -> f64 {
    let mut left = metrics;
    let mut cost = 0.0;
    for (size, price) in METRIC_TIERS {
        let n = left.min(size);
        cost += n * price;
        left -= n;
    }
    cost
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let moto = Moto::start();
    println!(
        "| series | datums a minute | calls a minute | floor ⌈datums/1000⌉ | bytes a minute on the wire (gzip) | uncompressed | custom metrics a month | PutMetricData a month | EMF: bytes a minute | EMF a month |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in [100usize, 1_000, 10_000] {
        // A fresh adapter per size: a call of the previous size still in flight
        // cannot be counted with this one.
        let adapter = CwAdapter::start(&moto);
        let client = cloudwatch::client(&adapter.endpoint()).await;
        let yaml = format!(
            "cloudwatch:\n  namespace: Bench{n}\n  interval: 1s\n  max_queued: 20000\n  metrics:\n    - series: vigil_probe_duration_seconds\n      stat: summary\n      unit: Seconds\n      labels: [probe]\n"
        );
        let settings: PublishSettings = serde_saphyr::from_str(&yaml).expect("yaml");
        let mut c = vigil::settings::Collector::new(Path::new("bench.yaml"));
        let cfg = settings
            .validate(&mut c, vigil::store::DEFAULT_RETENTION)
            .expect("valid");
        let to = Utc::now().timestamp_millis();
        let mut store = Store::new(20_000, 3_600_000);
        // Six samples a minute per series (a 10 s probe), each series one datum.
        for i in 0..n {
            let l = Labels::from_pairs(
                "vigil_probe_duration_seconds",
                &[("probe", &format!("probe-{i:05}"))],
            );
            for k in 0..6 {
                store
                    .append(
                        &l,
                        to - 60_000 + 10_000 * k + 5_000,
                        0.001 * (i % 97 + k as usize) as f64,
                    )
                    .expect("append");
            }
        }
        let place = Place {
            environment: "production".into(),
            service: "watch-together".into(),
            ..Place::default()
        };
        // The same flush as EMF lines.
        let windows = publish::aggregate::snapshot(&store, &cfg.metrics, to - 60_000, to);
        let mut skipped = 0;
        let mut emf_datums =
            publish::aggregate::datums(&cfg.metrics, windows, &place, to, true, &mut skipped);
        emf_datums.push(publish::heartbeat(&cfg, &place, to));
        let emf_lines = publish::emf::render(&cfg.namespace, &emf_datums);
        let emf_bytes: usize = emf_lines
            .iter()
            .map(|l| l.len() + 1 + LOG_EVENT_OVERHEAD)
            .sum();

        let sink = Arc::new(AnySink::CloudWatch(CloudWatchSink::with_client(
            &cfg,
            client.clone(),
        )));
        let mut stages = Stages::new(Supervisor::new());
        let publisher = publish::start(
            cfg,
            place,
            sink,
            cloudwatch::fake(store, to - 60_000, to),
            std::time::Duration::ZERO,
            &mut stages,
        );
        let mut view = publisher.view.clone();
        let datums = n + 1;
        tokio::time::timeout(
            Duration::from_secs(120),
            view.wait_for(|v| v.datums_sent >= datums as u64),
        )
        .await
        .expect("sent in time")
        .expect("publisher running");
        drop(publisher);
        drop(stages);
        // The first flush's calls: until their datums add up.
        let mut calls = 0;
        let (mut wire, mut body, mut seen) = (0, 0, 0);
        for call in adapter
            .calls()
            .iter()
            .filter(|c| c.operation == "PutMetricData")
        {
            if seen >= datums {
                break;
            }
            calls += 1;
            wire += call.wire_bytes;
            body += call.body_bytes;
            seen += call.datums.unwrap_or(0);
        }
        assert_eq!(seen, datums, "the first flush's calls");
        let floor = datums.div_ceil(1_000);
        let metrics_month = metric_cost(datums as f64);
        let api_month = calls as f64 * MINUTES_PER_MONTH / 1_000.0 * API_PER_1000;
        let emf_month = emf_bytes as f64 * MINUTES_PER_MONTH / 1e9 * LOGS_PER_GB;
        println!(
            "| {n} | {datums} | {calls} | {floor} | {wire} | {body} | ${metrics_month:.2} | ${api_month:.2} | {emf_bytes} | ${emf_month:.2} |"
        );
    }
}
