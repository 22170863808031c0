//! `mode: api`: PutMetricData through the AWS SDK (Smithy RPC v2 CBOR), bodies above
//! 10 KiB gzipped by the SDK.

use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};

use super::{CloudWatchConfig, Datum, DatumValue, Sink};
use crate::peer::SendError;

/// PutMetricData's limit on datums per call.
pub(crate) const MAX_DATUMS: usize = 1_000;
/// PutMetricData's limit on the request body, uncompressed to be safe.
pub(crate) const MAX_BYTES: usize = 1_000_000;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A CloudWatch client for Vigil's own calls (see [`crate::aws::sdk_config`]).
pub async fn client(region: Option<&str>) -> aws_sdk_cloudwatch::Client {
    let config = crate::aws::sdk_config(region, CALL_TIMEOUT).await;
    aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&config)
            .interceptor(crate::aws::AnswerLimit)
            .build(),
    )
}

/// Sends batches with PutMetricData.
pub struct CloudWatchSink {
    /// The namespace.
    namespace: String,
    /// The SDK client.
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchSink {
    /// A sink for `cfg`'s namespace and region.
    pub async fn new(cfg: &CloudWatchConfig) -> CloudWatchSink {
        CloudWatchSink::with_client(cfg, client(cfg.region.as_deref()).await)
    }

    /// A sink for `cfg`'s namespace through `client`.
    pub fn with_client(
        cfg: &CloudWatchConfig,
        client: aws_sdk_cloudwatch::Client,
    ) -> CloudWatchSink {
        CloudWatchSink {
            namespace: cfg.namespace.clone(),
            client,
        }
    }
}

/// The SDK's form of a datum.
pub(crate) fn to_sdk(d: &Datum) -> MetricDatum {
    let mut b = MetricDatum::builder()
        .metric_name(&d.name)
        .set_dimensions(Some(
            d.dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect(),
        ))
        .timestamp(AwsTime::from_millis(d.timestamp_ms));
    b = match &d.value {
        DatumValue::Single(v) => b.value(*v),
        DatumValue::Stats {
            count,
            sum,
            min,
            max,
        } => b.statistic_values(
            StatisticSet::builder()
                .sample_count(*count)
                .sum(*sum)
                .minimum(*min)
                .maximum(*max)
                .build(),
        ),
        DatumValue::Distribution { values, counts } => b
            .set_values(Some(values.clone()))
            .set_counts(Some(counts.clone())),
    };
    if let Some(u) = &d.unit {
        b = b.unit(StandardUnit::from(u.as_str()));
    }
    if d.high_resolution {
        b = b.storage_resolution(1);
    }
    b.build()
}

impl Sink for CloudWatchSink {
    fn max_datums(&self) -> usize {
        MAX_DATUMS
    }

    fn max_bytes(&self) -> usize {
        MAX_BYTES
    }

    async fn send(&self, batch: &[Datum]) -> Result<(), SendError> {
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(batch.iter().map(to_sdk).collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

/// A batch CloudWatch refuses for what it holds (invalid or missing parameters, a
/// body it cannot read or too large) cannot succeed on a retry, and retrying it
/// would hold up every batch behind it: it is dropped. Everything else — unreachable,
/// throttled, 5xx, credentials or permissions (the same for every batch, and fixed
/// outside Vigil) — is retried.
fn classify<E>(e: aws_sdk_cloudwatch::error::SdkError<E>) -> SendError
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
    let code = e.code().unwrap_or("").to_string();
    let status = e.raw_response().map(|r| r.status().as_u16());
    let reason = match e.message() {
        Some(m) => format!("{code}: {m}"),
        None => aws_sdk_cloudwatch::error::DisplayErrorContext(&e).to_string(),
    };
    let refused = matches!(
        code.as_str(),
        "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "InvalidParameterCombination"
            | "InvalidParameterCombinationException"
            | "MissingParameter"
            | "MissingRequiredParameter"
            | "MissingRequiredParameterException"
            | "ValidationError"
            | "ValidationException"
            | "SerializationException"
            | "InvalidFormatFault"
    ) || status == Some(413);
    if refused {
        SendError::permanent(reason)
    } else {
        SendError::retry(reason)
    }
}
