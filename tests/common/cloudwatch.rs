//! What the CloudWatch tests and `benches/publish_calls.rs` share: an SDK client for
//! the CBOR adapter, and a stand-in for the rule manager's side of publishing.
#![allow(dead_code)]

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
            if let Input::Snapshot {
                selectors,
                lookback,
                reply,
                ..
            } = input
            {
                let windows = selectors
                    .iter()
                    .map(|v| match first {
                        true => vigil::promql::eval::windows(&store, v, from, to, lookback),
                        false => Vec::new(),
                    })
                    .collect();
                first = false;
                let _ = reply.send(windows);
            }
        }
    });
    tx
}

/// An SDK client for the adapter at `endpoint`, with moto's test credentials.
pub async fn client(endpoint: &str) -> aws_sdk_cloudwatch::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&conf)
}
