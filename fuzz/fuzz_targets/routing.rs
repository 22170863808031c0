//! The routing file: any bytes give a routing or problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = std::collections::HashMap::new();
        let _ = vigil::route::parse(std::path::Path::new("routing.yaml"), text, &env);
    }
});
