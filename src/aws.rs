//! The AWS SDK configuration that Vigil's own calls (SNS, CloudWatch) share: no SDK
//! retries — each caller retries with its own backoff, so a failure shows in
//! `/status` at once — and every call bounded.

use std::time::Duration;

/// Credentials and endpoint from the SDK's usual chain (`AWS_ENDPOINT_URL_<SERVICE>`
/// for a local AWS), `region` when given (else the chain's), no retries, each call
/// bounded by `timeout` and each connection attempt by at most 3 s.
pub async fn sdk_config(region: Option<&str>, timeout: Duration) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(3)))
                .build(),
        );
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader.load().await
}
