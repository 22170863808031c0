//! The series store within its byte budget: 50 000 series scraped every 10 s for the
//! full hour of retention (time injected) stay within the budget a 256 MiB task gets,
//! new series still find room, and the store's own byte count is honest: the
//! process's resident memory grows by no more than it (plus the allocator's slack).
//! Alone in its binary, so that no other test's memory is counted.

use vigil::store::{Labels, Store};

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn fifty_thousand_series_for_an_hour_fit_the_budget_of_a_256_mib_task() {
    let budget = vigil::store::budget_for_limit(Some(256 << 20));
    assert_eq!(budget, 128 << 20);
    let retention = 3_600_000;
    let mut store = Store::new(50_000 + 100, retention).with_max_bytes(budget);
    let series: Vec<Labels> = (0..50_000)
        .map(|i| {
            Labels::from_pairs(
                "http_request_duration_seconds_bucket",
                &[
                    ("job", "app"),
                    ("instance", "10.0.1.17:3000"),
                    ("route", &format!("/api/rooms/{}", i / 13)),
                    ("le", &format!("{}", i % 13)),
                ],
            )
        })
        .collect();
    let before = rss();
    let start = 1_800_000_000_000i64;
    let mut peak = 0;
    for step in 0..=360 {
        let t = start + step * 10_000;
        for (i, l) in series.iter().enumerate() {
            store.append(l, t, (step as usize + i) as f64).unwrap();
        }
        // The manager trims every 10 s.
        store.trim(t);
        peak = peak.max(store.bytes());
        assert!(
            store.bytes() <= budget,
            "at step {step}: {} bytes",
            store.bytes()
        );
    }
    assert_eq!(store.len(), 50_000);
    assert_eq!(store.dropped_series(), 0);
    // The budget cost retention, and says so.
    assert!(store.effective_retention_ms() < retention);
    assert!(store.effective_retention_ms() >= vigil::store::MIN_RETENTION_MS);
    assert!(store.evicted_samples() > 0);
    // New series (a recording rule's output, ALERTS) still find room.
    let end = start + 3_610_000;
    store.trim(end);
    for i in 0..100 {
        let l = Labels::from_pairs("ALERTS", &[("alertname", &format!("A{i}"))]);
        store.append(&l, end, 1.0).unwrap();
    }
    assert_eq!(store.dropped_series(), 0);
    // What the store counts is what the process holds, within the allocator's
    // slack: its count is a bound one can trust.
    let grown = rss().saturating_sub(before);
    eprintln!(
        "store counts {} bytes (peak {peak}), the process grew by {grown}; retention in effect {} s, {} samples evicted, {} held",
        store.bytes(),
        store.effective_retention_ms() / 1000,
        store.evicted_samples(),
        store.samples()
    );
    assert!(
        grown as f64 <= budget as f64 * 1.15,
        "the process grew by {grown} bytes for a store that counts {} (peak {peak})",
        store.bytes()
    );
}
