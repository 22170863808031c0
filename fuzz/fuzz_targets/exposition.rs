//! The Prometheus text exposition a scrape reads: any page parses or fails, within
//! the sample limit, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut seen = 0;
        if let Ok(samples) = vigil::scrape::text::parse(text, 1000, &mut seen) {
            assert!(samples.len() <= 1000);
        }
    }
});
