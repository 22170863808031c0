//! The AWS SDK configuration that Vigil's own calls (SNS, CloudWatch) share: no SDK
//! retries — each caller retries with its own backoff, so a failure shows in
//! `/status` at once — and every call bounded.

use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

/// The most of an AWS answer read: SNS's and CloudWatch's answers are a few hundred
/// bytes. The SDK reads a whole body before parsing it, and puts it into its error
/// when it does not parse: a misbehaving endpoint answering 100 MB would otherwise
/// cost 100 MB, and more again in the error's text.
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Cuts every answer's body at [`MAX_ANSWER_BYTES`]: past it, reading the body fails
/// and the call fails with "length limit exceeded".
#[derive(Debug)]
pub struct AnswerLimit;

impl Intercept for AnswerLimit {
    fn name(&self) -> &'static str {
        "AnswerLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().take_body();
        *context.response_mut().body_mut() =
            body.map(|b| SdkBody::from_body_1_x(http_body_util::Limited::new(b, MAX_ANSWER_BYTES)));
        Ok(())
    }
}

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
