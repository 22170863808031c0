//! What the fuzz targets share.

use std::sync::Once;

/// Lets a panic unwind as it does in the daemon, instead of aborting where it starts.
///
/// libfuzzer-sys's panic hook aborts the process at the panic, before any
/// `catch_unwind` runs. The daemon unwinds (the release profile keeps
/// `panic = "unwind"`), and `vigil::promql::parse` turns the panics promql-parser is
/// known for (`up[1e400]`: a float past any `Duration`) into a parse error with
/// `catch_unwind`; under the fuzzer's hook those inputs were crashes the daemon never
/// has. With the hook gone, a panic that nothing catches still reaches libfuzzer-sys's
/// own `catch_unwind` around the target, which aborts: still a crash, and its input
/// still kept. Caught panics print nothing, so they cannot flood the run's output.
pub fn unwind_like_the_daemon() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
