//! A stand-in for the rule manager's side of publishing, shared by the publishing
//! tests and `benches/publish_calls.rs`.

use tokio::sync::mpsc;
use vigil::rules::manager::Input;
use vigil::store::Store;

/// Answers the publisher's snapshot requests as the manager would: the first with
/// `store`'s samples in `(from, to]`, later ones with nothing (only the heartbeat
/// is sent then).
pub fn fake(store: Store, from: i64, to: i64) -> mpsc::Sender<Input> {
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut first = true;
        while let Some(input) = rx.recv().await {
            if let Input::Snapshot { metrics, reply, .. } = input {
                let windows = if first {
                    vigil::publish::aggregate::snapshot(&store, &metrics, from, to)
                } else {
                    metrics.iter().map(|_| Vec::new()).collect()
                };
                first = false;
                let _ = reply.send(windows);
            }
        }
    });
    tx
}
