//! promtool's rule test files (`vigil test rules`): series notation and value
//! expansions, and whole files, read or refused without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::unwind_like_the_daemon();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = vigil::rules::unittest::parse_series(text);
    let _ = vigil::rules::unittest::expand_values(text);
    let dir = std::env::temp_dir().join(format!("vigil-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("test.yaml");
    if std::fs::write(&file, text).is_ok() {
        let _ = vigil::rules::unittest::run_file(&file);
    }
});
