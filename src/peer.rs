//! What every HTTP peer answers goes through here: a body is read with a limit (a
//! misbehaving target, receiver or metadata endpoint cannot make the daemon hold more
//! than that), and an HTTP client's error text loses every URL in it before it can
//! reach the log or `/status`.

/// The most of an error answer (a receiver's 4xx or 5xx body) kept for the log.
pub(crate) const ERROR_BODY_BYTES: usize = 4 << 10;

/// The most of a JSON answer (ECS task metadata, PagerDuty's reply) read.
pub const JSON_BODY_BYTES: usize = 1 << 20;

/// The longest reason kept for a failure (a probe's, a delivery's, a publish's):
/// enough to say what went wrong, never a peer's whole answer.
pub(crate) const MAX_REASON_BYTES: usize = 600;

/// `text` cut to [`MAX_REASON_BYTES`] on a character boundary, the cut marked.
pub fn bounded(text: impl Into<String>) -> String {
    let mut text = text.into();
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body grew past the limit; reading stopped there.
    #[error("the body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The connection failed or timed out while reading.
    #[error("reading the body failed: {0}")]
    Read(String),
}

/// Reads the whole body, chunk by chunk, failing as soon as it passes `limit` bytes
/// (after decompression: a small gzip answer cannot inflate past the limit either).
pub async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    if let Some(len) = response.content_length()
        && len > limit as u64
        && response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_none()
    {
        return Err(BodyError::TooLarge(limit));
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(error_text(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `limit` bytes of the body and drops the rest unread: enough of an
/// error answer or a health page to judge it, never more.
pub async fn read_prefix(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response
            .chunk()
            .await
            .map_err(|e| BodyError::Read(error_text(&e)))?
        {
            Some(chunk) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(body)
}

/// The first [`ERROR_BODY_BYTES`] of an answer as text, for a log line; URLs in it
/// are cut to their origin, since a receiver may echo the request's.
pub async fn error_body(mut response: reqwest::Response) -> String {
    let bytes = read_prefix(&mut response, ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    crate::settings::secret::scrub_known(String::from_utf8_lossy(&bytes).trim())
}

/// A reqwest error and its causes as one line, with no URL in it: reqwest's own text
/// names the full URL (`error sending request for url (...)`), and a webhook's or a
/// dead man's switch's secret is that URL's path.
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut kind = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read".to_string()
    } else if e.is_redirect() {
        "too many redirects".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    kind.push_str(&text);
    crate::settings::secret::scrub_known(&kind)
}

/// The one client every plain HTTP peer is reached with (notifiers, the ECS
/// metadata endpoint, the CLI): every request bounded by `timeout`. It fails only
/// when the platform refuses a TLS backend, and says so; it never falls back to a
/// client without the timeout.
pub fn client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", error_text(&e)))
}

/// Why a delivery to a peer failed (a notification, a CloudWatch batch), and
/// whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    /// Whether a later attempt can succeed (timeouts, 429, 5xx, connection errors).
    pub retryable: bool,
    /// What the receiver or the network said.
    pub reason: String,
}

impl SendError {
    /// An error worth retrying.
    pub fn retry(reason: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            reason: bounded(crate::settings::secret::scrub_known(&reason.into())),
        }
    }

    /// An error no retry can fix (the request itself is wrong).
    pub fn permanent(reason: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            reason: bounded(crate::settings::secret::scrub_known(&reason.into())),
        }
    }

    /// Classifies an HTTP status as PagerDuty and webhooks use them: 2xx is handled
    /// by the caller, 429 and 5xx are retried, other 4xx are not.
    pub fn from_status(status: reqwest::StatusCode, body: &str) -> SendError {
        let reason = format!("HTTP {status}: {}", truncate(body.trim(), 300));
        if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            SendError::retry(reason)
        } else {
            SendError::permanent(reason)
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_alertmanager_does() {
        use reqwest::StatusCode;
        assert!(SendError::from_status(StatusCode::TOO_MANY_REQUESTS, "").retryable);
        assert!(SendError::from_status(StatusCode::BAD_GATEWAY, "").retryable);
        assert!(!SendError::from_status(StatusCode::BAD_REQUEST, "bad key").retryable);
        assert_eq!(
            SendError::from_status(StatusCode::BAD_REQUEST, "bad key").reason,
            "HTTP 400 Bad Request: bad key"
        );
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 3), "abc");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6 && t.ends_with('…'), "{t}");
    }

    #[tokio::test]
    async fn a_request_error_names_no_path() {
        // Nothing listens on port 9 of loopback.
        let e = reqwest::Client::new()
            .get("http://127.0.0.1:9/hook/s3cret-path?token=abc")
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("s3cret-path"),
            "reqwest names it: {e}"
        );
        let text = error_text(&e);
        assert!(!text.contains("s3cret") && !text.contains("abc"), "{text}");
        assert!(text.starts_with("connection failed"), "{text}");
    }
}
