//! The silences API: any request body and any matcher is read or refused without a
//! panic; a silence that validates has an end after its start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(new) = serde_json::from_slice::<vigil::route::silence::NewSilence>(data) {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        if let Ok(s) = new.validate(now) {
            assert!(s.ends_at >= s.starts_at);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vigil::route::matcher::Matcher::parse(text);
    }
});
