//! `http`: an HTTP(S) endpoint answers with an expected status, and optionally a body
//! that contains a string or a JSON field with a given value. For `https` URLs the
//! days left on the server's certificate are measured too.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Observation, Probe, Sample};
use crate::settings::Collector;
use crate::settings::secret::SecretUrl;

/// Bodies are read up to this size when a body condition is set.
const MAX_BODY_BYTES: usize = 1 << 20;

/// `http:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The URL to GET.
    url: Spanned<String>,
    /// Status codes that count as healthy (default: any 2xx).
    #[serde(default)]
    expect_status: Option<Spanned<Vec<u16>>>,
    /// The body must contain this text.
    #[serde(default)]
    body_contains: Option<String>,
    /// A JSON field of the body must have this value.
    #[serde(default)]
    json: Option<JsonSettings>,
    /// Fail when the certificate has fewer days left than this.
    #[serde(default)]
    min_tls_days: Option<u32>,
}

/// `json:` under `http:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSettings {
    /// A JSON pointer (RFC 6901) such as `/status`.
    pointer: Spanned<String>,
    /// The value the field must have, compared as text (`ok`, `true`, `3`).
    equals: String,
}

/// Validated `http` settings.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The URL, with any credentials redacted for display.
    pub url: SecretUrl,
    /// Healthy status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// Required body text.
    pub body_contains: Option<String>,
    /// Required JSON field (pointer, value as text).
    pub json: Option<(String, String)>,
    /// Least certificate days left before the check fails.
    pub min_tls_days: Option<u32>,
}

impl HttpSettings {
    /// Checks the URL and the conditions.
    pub fn validate(self, c: &mut Collector) -> Option<HttpSpec> {
        let mut ok = true;
        let url = crate::settings::secret::http_url(&self.url, c);
        let expect_status = match self.expect_status {
            None => Vec::new(),
            Some(s) => {
                if s.value.is_empty() || s.value.iter().any(|&code| !(100..=599).contains(&code)) {
                    c.at(
                        s.referenced,
                        "expect_status must list HTTP status codes from 100 to 599",
                    );
                    ok = false;
                }
                s.value
            }
        };
        let json = match self.json {
            None => None,
            Some(j) => {
                if !j.pointer.value.starts_with('/') {
                    c.at(
                        j.pointer.referenced,
                        format!(
                            "pointer {:?} must start with '/', like /status",
                            j.pointer.value
                        ),
                    );
                    ok = false;
                }
                Some((j.pointer.value, j.equals))
            }
        };
        let url = url?;
        ok.then_some(HttpSpec {
            url,
            expect_status,
            body_contains: self.body_contains,
            json,
            min_tls_days: self.min_tls_days,
        })
    }
}

/// Checks an HTTP endpoint with its own client (connection reuse between checks).
pub struct HttpProbe {
    /// What to check.
    spec: HttpSpec,
    /// Keeps connections alive between checks; never follows redirects, because a
    /// health endpoint that redirects is itself a finding.
    client: reqwest::Client,
}

impl HttpProbe {
    /// A probe for `spec`, with connection attempts bounded by `timeout`.
    pub fn new(spec: HttpSpec, timeout: Duration) -> Result<HttpProbe, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .tls_info(true)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(HttpProbe { spec, client })
    }

    fn judge(&self, status: u16, body: Option<&[u8]>) -> Result<(), String> {
        let url = self.spec.url.redacted();
        let status_ok = if self.spec.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.spec.expect_status.contains(&status)
        };
        if !status_ok {
            return Err(format!("{url} answered HTTP {status}"));
        }
        let body = body.unwrap_or_default();
        if let Some(needle) = &self.spec.body_contains
            && !String::from_utf8_lossy(body).contains(needle.as_str())
        {
            return Err(format!("{url} answered without {needle:?} in its body"));
        }
        if let Some((pointer, expected)) = &self.spec.json {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| format!("{url} answered a body that is not JSON: {e}"))?;
            let found = match value.pointer(pointer) {
                None => return Err(format!("{url} answered JSON without {pointer}")),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            if &found != expected {
                return Err(format!(
                    "{url} answered {pointer} = {found:?}, expected {expected:?}"
                ));
            }
        }
        Ok(())
    }
}

/// Days from now until the certificate in `der` expires.
fn days_left(der: &[u8]) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some((not_after - chrono::Utc::now().timestamp()) as f64 / 86_400.0)
}

impl Probe for HttpProbe {
    async fn check(&self) -> Observation {
        let url = self.spec.url.redacted();
        let response = match self.client.get(self.spec.url.expose()).send().await {
            Ok(r) => r,
            Err(e) => {
                let reason = crate::peer::error_text(&e);
                return Observation::failed(self.spec.url.scrub(&format!("{url}: {reason}")));
            }
        };
        let status = response.status().as_u16();
        let mut samples = vec![Sample::new(
            crate::families::HTTP_STATUS_CODE,
            f64::from(status),
        )];
        let mut tls_problem = None;
        if let Some(info) = response.extensions().get::<reqwest::tls::TlsInfo>()
            && let Some(days) = info.peer_certificate().and_then(days_left)
        {
            samples.push(Sample::new(crate::families::TLS_CERT_DAYS_LEFT, days));
            if let Some(min) = self.spec.min_tls_days
                && days < f64::from(min)
            {
                tls_problem = Some(format!(
                    "{url}: the certificate expires in {days:.1} days (minimum {min})"
                ));
            }
        }
        let needs_body = self.spec.body_contains.is_some() || self.spec.json.is_some();
        let body = if needs_body {
            let mut response = response;
            match crate::peer::read_prefix(&mut response, MAX_BODY_BYTES).await {
                Ok(b) => Some(b),
                Err(e) => {
                    return Observation {
                        result: Err(self.spec.url.scrub(&format!("{url}: {e}"))),
                        samples,
                    };
                }
            }
        } else {
            None
        };
        let result = self.judge(status, body.as_deref()).and(match tls_problem {
            Some(p) => Err(p),
            None => Ok(()),
        });
        Observation { result, samples }
    }

    fn target(&self) -> String {
        self.spec.url.redacted().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(
        expect_status: Vec<u16>,
        body_contains: Option<&str>,
        json: Option<(&str, &str)>,
    ) -> HttpProbe {
        let spec = HttpSpec {
            url: SecretUrl::parse("http://user:pw@127.0.0.1:1/health").unwrap(),
            expect_status,
            body_contains: body_contains.map(str::to_string),
            json: json.map(|(p, v)| (p.to_string(), v.to_string())),
            min_tls_days: None,
        };
        HttpProbe::new(spec, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn status_codes_are_judged_by_the_expected_list_or_2xx() {
        let any_2xx = probe(vec![], None, None);
        assert_eq!(any_2xx.judge(204, None), Ok(()));
        assert_eq!(
            any_2xx.judge(503, None),
            Err("http://user:***@127.0.0.1:1/health answered HTTP 503".into())
        );
        assert!(any_2xx.judge(301, None).is_err(), "redirects are findings");
        let listed = probe(vec![200, 401], None, None);
        assert_eq!(listed.judge(401, None), Ok(()));
        assert!(listed.judge(204, None).is_err());
    }

    #[test]
    fn body_and_json_conditions() {
        let p = probe(vec![], Some("healthy"), None);
        assert_eq!(p.judge(200, Some(b"all healthy")), Ok(()));
        assert!(
            p.judge(200, Some(b"sick"))
                .unwrap_err()
                .contains("without \"healthy\"")
        );
        let j = probe(vec![], None, Some(("/checks/db", "true")));
        assert_eq!(j.judge(200, Some(br#"{"checks":{"db":true}}"#)), Ok(()));
        assert_eq!(
            j.judge(200, Some(br#"{"checks":{"db":false}}"#)),
            Err("http://user:***@127.0.0.1:1/health answered /checks/db = \"false\", expected \"true\"".into())
        );
        assert!(
            j.judge(200, Some(b"<html>"))
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            j.judge(200, Some(b"{}"))
                .unwrap_err()
                .contains("without /checks/db")
        );
        let s = probe(vec![], None, Some(("/status", "ok")));
        assert_eq!(
            s.judge(200, Some(br#"{"status":"ok"}"#)),
            Ok(()),
            "strings compare unquoted"
        );
    }

    #[test]
    fn certificate_days_left_come_from_not_after() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let expected = (chrono::DateTime::parse_from_rfc3339("2035-01-01T00:00:00Z")
            .unwrap()
            .timestamp()
            - chrono::Utc::now().timestamp()) as f64
            / 86_400.0;
        let days = days_left(cert.der()).unwrap();
        assert!((days - expected).abs() < 0.01, "{days} vs {expected}");
        assert_eq!(days_left(b"not a certificate"), None);
    }
}
