//! PromQL: any expression parses or is refused, and one that parses evaluates (or
//! fails) against a small store without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::store::{Labels, Store};

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::unwind_like_the_daemon();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = vigil::promql::parse(text) else {
        return;
    };
    let mut store = Store::new(100, 3_600_000);
    for (i, v) in [1.0, f64::NAN, f64::INFINITY, -2.5, 0.0].iter().enumerate() {
        let l = Labels::from_pairs("m", &[("i", &i.to_string())]);
        for t in 0..5 {
            let _ = store.append(&l, 1_800_000_000_000 + t * 15_000, *v * t as f64);
        }
    }
    let _ = vigil::promql::evaluate(&expr, &store, 1_800_000_060_000);
});
