//! A target that flaps at every probe for ten minutes of test time, through the real
//! rule manager and router with injected time (no sleeping): `keep_firing_for` holds
//! the alert, so it pages once and resolves once; the router's group interval damps
//! what the rule lets through.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vigil::notify::lease::LeaseState;
use vigil::route::router::Router;
use vigil::rules::manager::{EngineView, Manager, Options};
use vigil::settings::Collector;
use vigil::store::Labels;

const ROUTING: &str = "receivers:
  - name: critical
    sns:
      topic_arn: arn:aws:sns:us-east-1:123456789012:critical
route:
  receiver: critical
  group_by: ['...']
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
";

fn rules(keep_firing_for: &str) -> Vec<vigil::rules::Group> {
    let text = format!(
        "groups:\n  - name: g\n    rules:\n      - alert: Flappy\n        expr: vigil_probe_success{{probe=\"flappy\"}} == 0\n        keep_firing_for: {keep_firing_for}\n        labels:\n          severity: critical\n"
    );
    let mut c = Collector::new(Path::new("rules.yaml"));
    let g = vigil::rules::parse(&text, &mut c);
    c.finish().unwrap();
    g
}

/// Probes every second, failing at every other probe for ten minutes, then
/// healthy for ten more; returns every (time, firing) notification.
fn run(keep_firing_for: &str) -> Vec<(i64, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let (view, _) = watch::channel(EngineView::default());
    let (routed_tx, routed_rx) = watch::channel(None);
    let mut manager = Manager::new(
        Options {
            groups: rules(keep_firing_for),
            default_interval: Duration::from_secs(1),
            max_series: 1000,
            notify: Some(Box::new(move |alerts| {
                routed_tx.send_replace(Some(alerts));
            })),
            ..Options::new(dir.path())
        },
        view,
    );
    let routing = vigil::route::parse(Path::new("routing.yaml"), ROUTING, &HashMap::new()).unwrap();
    let mut router = Router::new(Arc::new(routing), "test", HashMap::new());
    let series = Labels::from_pairs("vigil_probe_success", &[("probe", "flappy")]);
    let t0: i64 = 1_800_000_000_000;
    let mut sent = Vec::new();
    for s in 0..1200 {
        let t = t0 + s * 1000;
        let up = if s < 600 { s % 2 == 0 } else { true };
        manager.ingest(
            "probe/flappy".into(),
            t,
            vec![(series.clone(), if up { 1.0 } else { 0.0 })],
        );
        manager.evaluate(t, true);
        let alerts = routed_rx.borrow().clone().unwrap_or_default();
        let d = router.decide(&alerts, &[], LeaseState::Holder, t);
        router.committed(&d, t);
        for n in &d.notifications {
            for e in &n.events {
                sent.push(((t - t0) / 1000, e.firing));
            }
        }
    }
    sent
}

#[test]
fn keep_firing_for_turns_ten_minutes_of_flapping_into_one_page_and_one_resolve() {
    let sent = run("2m");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], (1, true), "paged at the first failure");
    // The last failure is at 599 s; keep_firing_for holds the alert 2 minutes more.
    assert_eq!(
        sent[1],
        (720, false),
        "resolved once, when the flapping is over"
    );
}

#[test]
fn without_keep_firing_for_the_group_interval_still_limits_pages() {
    let sent = run("0s");
    let pages = sent.iter().filter(|(_, firing)| *firing).count();
    // One page per 5-minute group interval over ten minutes of flapping, each
    // followed by its resolve: never one per flap (there were 300 flaps).
    assert!(pages <= 3, "{sent:?}");
    assert!(pages >= 2, "{sent:?}");
    let resolves = sent.len() - pages;
    assert_eq!(resolves, pages, "every page is resolved: {sent:?}");
}
