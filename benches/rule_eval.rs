//! One evaluation of 1 000 alerting rules over 10 000 series, in process: the same
//! workload as `bench/rules.sh` (bench/rules_workload.py), without the scrape.
//!
//!   cargo bench --bench rule_eval
//!   WORKLOAD=2.42 cargo bench --bench rule_eval
//!
//! Prints the median, minimum and maximum time of one evaluation of every rule over
//! 5 minutes of 10 s samples. `WORKLOAD=2.42` evaluates instead 1 000 rules written
//! with what Prometheus 2.42 adds to the basics: 400 subqueries
//! (`max_over_time(rate(…[1m])[5m:30s])`), 300 `predict_linear` ("full in 4
//! hours"), 200 `holt_winters` and 100 time-of-day conditions.

use std::path::Path;
use std::time::Instant;

use vigil::rules::{Group, parse};
use vigil::settings::Collector;
use vigil::store::{Labels, Store};

const SERVICES: usize = 100;
const ROUTES: usize = 5;
const CODES: [&str; 4] = ["200", "404", "500", "503"];
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "2.5", "5", "+Inf",
];
const GAUGES: usize = 2000;

fn rules() -> Vec<Group> {
    if std::env::var("WORKLOAD").as_deref() == Ok("2.42") {
        return rules_2_42();
    }
    let mut text = String::from("groups:\n  - name: bench\n    rules:\n");
    let mut add = |name: String, expr: String| {
        text.push_str(&format!(
            "      - alert: {name}\n        expr: '{expr}'\n        for: 1m\n        labels:\n          severity: warning\n"
        ));
    };
    for i in 0..400 {
        let s = i % SERVICES;
        add(
            format!("ErrorRatio{i}"),
            format!(
                r#"sum(rate(app_requests_total{{svc="s{s}",code=~"5.."}}[5m])) / sum(rate(app_requests_total{{svc="s{s}"}}[5m])) > 0.05"#
            ),
        );
    }
    for i in 0..300 {
        add(
            format!("Threshold{i}"),
            format!(r#"app_gauge{{g="g{}"}} > 0.{}"#, i % GAUGES, i % 9 + 1),
        );
    }
    for i in 0..200 {
        let s = i % SERVICES;
        add(
            format!("Latency{i}"),
            format!(
                r#"histogram_quantile(0.95, sum by (le) (rate(app_latency_seconds_bucket{{svc="s{s}"}}[5m]))) > 2"#
            ),
        );
    }
    for i in 0..100 {
        if i % 2 == 1 {
            add(format!("Up{i}"), r#"up{job="bench"} == 0"#.to_string());
        } else {
            add(
                format!("Absent{i}"),
                format!(r#"absent(app_gauge{{g="missing{i}"}})"#),
            );
        }
    }
    let mut c = Collector::new(Path::new("bench.yaml"));
    let groups = parse(&text, &mut c);
    c.finish().expect("the generated rules are valid");
    groups
}

/// The 2.42 workload: the same series, read through subqueries, `predict_linear`,
/// `holt_winters` and the time functions.
fn rules_2_42() -> Vec<Group> {
    let mut text = String::from("groups:\n  - name: bench-2-42\n    rules:\n");
    let mut add = |name: String, expr: String| {
        text.push_str(&format!(
            "      - alert: {name}\n        expr: '{expr}'\n        for: 1m\n        annotations:\n          summary: '{{{{ $labels }}}} at {{{{ $value | printf \"%.2f\" }}}}'\n"
        ));
    };
    for i in 0..400 {
        let s = i % SERVICES;
        add(
            format!("ErrorSpike{i}"),
            format!(
                r#"max_over_time(sum(rate(app_requests_total{{svc="s{s}",code=~"5.."}}[1m]))[5m:30s]) > 10"#
            ),
        );
    }
    for i in 0..300 {
        add(
            format!("FullIn4h{i}"),
            format!(
                r#"predict_linear(app_gauge{{g="g{}"}}[5m], 4 * 3600) < 0"#,
                i % GAUGES
            ),
        );
    }
    for i in 0..200 {
        add(
            format!("Smoothed{i}"),
            format!(
                r#"holt_winters(app_gauge{{g="g{}"}}[5m], 0.3, 0.3) > 0.9"#,
                i % GAUGES
            ),
        );
    }
    for i in 0..100 {
        add(
            format!("BusinessHours{i}"),
            format!(
                r#"app_gauge{{g="g{}"}} > 0.5 and on() (hour() >= 8 < 18) and on() (day_of_week() > 0 < 6)"#,
                i % GAUGES
            ),
        );
    }
    let mut c = Collector::new(Path::new("bench.yaml"));
    let groups = parse(&text, &mut c);
    c.finish().expect("the generated rules are valid");
    groups
}

fn store(scrapes: i64) -> Store {
    let mut store = Store::new(50_000, 3_600_000);
    for n in 1..=scrapes {
        let t = n * 10_000;
        let mut put = |labels: &Labels, v: f64| store.append(labels, t, v).unwrap();
        for s in 0..SERVICES {
            let svc = format!("s{s}");
            for r in 0..ROUTES {
                let route = format!("/r{r}");
                for c in CODES {
                    let rate = if c == "200" {
                        100
                    } else if s % 10 == 0 {
                        7
                    } else {
                        2
                    };
                    let l = Labels::from_pairs(
                        "app_requests_total",
                        &[
                            ("svc", &svc),
                            ("route", &route),
                            ("code", c),
                            ("job", "bench"),
                        ],
                    );
                    put(&l, (n * rate) as f64);
                }
                for (i, le) in BUCKETS.iter().enumerate() {
                    let l = Labels::from_pairs(
                        "app_latency_seconds_bucket",
                        &[
                            ("svc", &svc),
                            ("route", &route),
                            ("le", le),
                            ("job", "bench"),
                        ],
                    );
                    put(&l, (n * 10 * (i as i64 + 1)) as f64);
                }
            }
        }
        for g in 0..GAUGES {
            let l = Labels::from_pairs("app_gauge", &[("g", &format!("g{g}")), ("job", "bench")]);
            put(
                &l,
                ((g * 7919 + n as usize * 104_729) % 1000) as f64 / 1000.0,
            );
        }
        put(&Labels::from_pairs("up", &[("job", "bench")]), 1.0);
    }
    store
}

fn main() {
    let scrapes = 31;
    let mut store = store(scrapes);
    let mut groups = rules();
    println!(
        "series {}, samples {}, rules {}",
        store.len(),
        store.samples(),
        groups[0].rules.len()
    );
    let mut times = Vec::new();
    let t0 = scrapes * 10_000;
    for round in 0..15 {
        let start = Instant::now();
        for g in &mut groups {
            for outcome in g.eval(&mut store, t0 + round) {
                assert!(outcome.error.is_none(), "{:?}", outcome);
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "one evaluation of 1000 rules over {} series: median {:.1} ms (min {:.1}, max {:.1}) over {} rounds",
        store.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}
