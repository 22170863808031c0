//! The config file: any bytes give a config or problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = std::collections::HashMap::from([(
            "APP_URL".to_string(),
            "http://127.0.0.1:3000".to_string(),
        )]);
        let _ = vigil::config::parse(std::path::Path::new("/nonexistent/vigil.yaml"), text, &env);
    }
});
