//! Bytes per series and per sample in the series store, measured as the growth of
//! this process's resident memory, beside the store's own count (`Store::bytes`,
//! what the byte budget is held to). `cargo bench --bench store_bytes`.
//!
//! Labels are made fresh for each series, as a scrape makes them.

use vigil::store::{Labels, Store};

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn main() {
    let n = 50_000usize;
    let samples = 360i64;
    let mut store = Store::new(usize::MAX, i64::MAX);
    let start = 1_800_000_000_000i64;
    let before = rss();
    for i in 0..n {
        let l = Labels::new([
            (
                "__name__".to_string(),
                "http_request_duration_seconds_bucket".to_string(),
            ),
            ("job".to_string(), "app".to_string()),
            ("instance".to_string(), "10.0.1.17:3000".to_string()),
            ("route".to_string(), format!("/api/rooms/{}", i / 13)),
            ("le".to_string(), format!("{}", i % 13)),
        ]);
        store.append(&l, start, 0.0).expect("room");
    }
    let with_series = rss();
    let counted_series = store.bytes();
    let labels: Vec<Labels> = store
        .select(
            &[("__name__", "http_request_duration_seconds_bucket")],
            |_| true,
        )
        .iter()
        .map(|s| s.labels.clone())
        .collect();
    for step in 1..samples {
        for l in &labels {
            store
                .append(l, start + step * 10_000, step as f64)
                .expect("room");
        }
    }
    let with_samples = rss();
    let per_series = (with_series - before) as f64 / n as f64;
    let per_sample = (with_samples - with_series) as f64 / (n as f64 * (samples - 1) as f64);
    println!("store_bytes: {n} series of 5 labels, {samples} samples each");
    println!(
        "  resident per series (labels, index, first sample): {per_series:.0} B; the store counts {:.0} B",
        counted_series as f64 / n as f64
    );
    println!(
        "  resident per sample: {per_sample:.1} B; the store counts {:.1} B (ring-buffer room included)",
        (store.bytes() - counted_series) as f64 / (n as f64 * (samples - 1) as f64)
    );
    println!(
        "  in all: resident {:.1} MiB, counted {:.1} MiB",
        (with_samples - before) as f64 / 1048576.0,
        store.bytes() as f64 / 1048576.0
    );
}
