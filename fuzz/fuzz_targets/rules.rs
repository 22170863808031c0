//! Rule files: any bytes give groups or problems; a group that loads is evaluated
//! twice against a small store (series named `up`, `m` and `disk_used_ratio` with
//! ordinary values, NaN and ±Inf), so that its alerts fire and their label and
//! annotation templates run, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::store::{Labels, Store};

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::unwind_like_the_daemon();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut c = vigil::settings::Collector::new(std::path::Path::new("rules.yaml"));
    let mut groups = vigil::rules::parse(text, &mut c);
    if c.finish().is_err() {
        return;
    }
    let mut store = Store::new(100, 3_600_000);
    let values = [1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.95, 1e300];
    for name in ["up", "m", "disk_used_ratio"] {
        for (i, v) in values.iter().enumerate() {
            let l = Labels::from_pairs(name, &[("instance", &format!("h{i}.example:9100"))]);
            for t in 0..5 {
                let _ = store.append(&l, t * 15_000, *v);
            }
        }
    }
    for g in &mut groups {
        let _ = g.eval(&mut store, 60_000);
        let _ = g.eval(&mut store, 120_000);
    }
});
