//! The Watch Together server's request bodies (the room to create): any bytes are
//! read or refused without a panic. Its WebSocket messages come with issue #16.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<watch_together::routes::rooms::NewRoom>(data);
});
