//! Rule files: any bytes give groups or problems; a group that loads is evaluated
//! once against an empty store without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut c = vigil::settings::Collector::new(std::path::Path::new("rules.yaml"));
        let _ = vigil::rules::parse(text, &mut c);
        let _ = c.finish();
    }
});
