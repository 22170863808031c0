//! Secrets that cannot leak: a [`Secret`] prints as `***`, and URLs are shown with
//! their password replaced (`postgres://vigil:***@db:5432/app`).

use std::fmt;

/// A value that must never reach a log line, `/status` or `/metrics`. Its `Debug` and
/// `Display` print `***`; the value is read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Every secret value made in this process (four characters or more), so that a
/// text from a peer can be scrubbed of all of them ([`scrub_known`]): a receiver
/// that echoes a key it was never sent by this integration still shows none.
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Replaces every secret value this process knows with `***`, and every URL with its
/// origin ([`strip_urls`]): for texts that come from outside (a receiver's answer,
/// a client library's error).
pub(crate) fn scrub_known(text: &str) -> String {
    scrub_secrets(&strip_urls(text)).into_owned()
}

/// Replaces every secret value this process knows with `***` (URLs are left as
/// they are): what every log line goes through, a dependency's own included.
pub(crate) fn scrub_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in known.iter() {
        if out.contains(s.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(s.as_str(), "***"));
        }
    }
    out
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        if value.len() >= 4 {
            let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
            if !known.contains(&value) {
                known.push(value.clone());
                // Longest first, so that a secret containing another goes whole.
                known.sort_by_key(|s| std::cmp::Reverse(s.len()));
            }
        }
        Secret(value)
    }

    /// The value itself, for the one place that must send it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the secret in `text` with `***`, for error
    /// messages that a library may have built from the value.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL whose password (if any) is kept as a [`Secret`], with a redacted form for
/// display. Query parameters named like a secret (`password`, `token`, `key`) are
/// redacted too. An endpoint URL ([`SecretUrl::parse_endpoint`]: a webhook, the
/// PagerDuty API) shows only its scheme, host and port, because receivers such as
/// dead man's switches keep their secret in the path.
#[derive(Clone)]
pub struct SecretUrl {
    /// The full URL, password included.
    full: Secret,
    /// The URL with `***` in place of the password and secret parameters.
    redacted: String,
    /// The password alone, to scrub it from error messages.
    password: Option<Secret>,
    /// For an endpoint: its path and query, secret as a whole.
    path: Option<Secret>,
}

impl SecretUrl {
    /// Parses `text` as a URL.
    pub fn parse(text: &str) -> Result<SecretUrl, url::ParseError> {
        let url = url::Url::parse(text)?;
        let password = url
            .password()
            .map(|p| Secret::new(percent_decode(p).unwrap_or_else(|| p.to_string())));
        let mut shown = url.clone();
        if url.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        let secret_params = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "password",
                "passwd",
                "token",
                "secret",
                "key",
                "sslpassword",
            ]
            .iter()
            .any(|s| k.contains(s))
        };
        if url.query_pairs().any(|(k, _)| secret_params(&k)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secret_params(&k) {
                        // Known to the process, so that no text shows it.
                        let _ = Secret::new(v.as_ref());
                        "***".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        Ok(SecretUrl {
            // The URL as a whole is not registered: its secret parts are.
            full: Secret(text.to_string()),
            redacted: shown.to_string().replace("%2A%2A%2A", "***"),
            password,
            path: None,
        })
    }

    /// Parses `text` as an endpoint URL whose path and query may be the secret (a
    /// webhook's token, a dead man's switch's id): it shows as `scheme://host:port`
    /// only, everywhere but the request itself.
    pub fn parse_endpoint(text: &str) -> Result<SecretUrl, url::ParseError> {
        let mut u = SecretUrl::parse(text)?;
        let parsed = url::Url::parse(text)?;
        u.redacted = origin(&parsed);
        let mut path = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path = format!("{path}?{q}");
        }
        u.path = (path.len() > 1).then(|| Secret::new(path));
        Ok(u)
    }

    /// The URL with its secrets, for the connection itself.
    pub fn expose(&self) -> &str {
        self.full.expose()
    }

    /// The URL as it may be shown anywhere.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Removes the password and the full URL from a message built by a library.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(self.full.expose(), &self.redacted);
        if let Some(p) = &self.password {
            text = p.scrub(&text);
        }
        if let Some(p) = &self.path {
            text = strip_urls(&p.scrub(&text));
        }
        text
    }
}

/// `scheme://host:port` of a URL: what may be shown of an endpoint.
fn origin(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port_or_known_default() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// Replaces every URL in `text` with its scheme, host and port: HTTP clients put the
/// whole URL, path and query included, into their error texts, and those texts reach
/// `/status` and the log. Applied to every error text an HTTP peer causes.
pub(crate) fn strip_urls(text: &str) -> String {
    static URL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>()\[\]{}]+"#)
            .expect("a valid pattern")
    });
    URL.replace_all(text, |c: &regex::Captures<'_>| {
        let found = &c[0];
        // A trailing full stop or comma ends the sentence, not the URL.
        let trimmed = found.trim_end_matches(['.', ',', ';', ':']);
        let tail = &found[trimmed.len()..];
        match url::Url::parse(trimmed) {
            Ok(u) if u.host_str().is_some() => format!("{}{tail}", origin(&u)),
            _ => format!("{}://***{tail}", trimmed.split("://").next().unwrap_or("")),
        }
    })
    .into_owned()
}

/// Reads an `http://` or `https://` URL setting, recording at its position why it is
/// not one: the probes' `url` and the scrapes' `url` (their path is shown).
pub(crate) fn http_url(
    value: &serde_saphyr::Spanned<String>,
    c: &mut super::Collector,
) -> Option<SecretUrl> {
    checked_http(SecretUrl::parse(&value.value), value, c)
}

/// Reads an `http://` or `https://` endpoint URL setting (a webhook's, PagerDuty's),
/// shown as scheme, host and port only ([`SecretUrl::parse_endpoint`]).
pub(crate) fn http_endpoint(
    value: &serde_saphyr::Spanned<String>,
    c: &mut super::Collector,
) -> Option<SecretUrl> {
    checked_http(SecretUrl::parse_endpoint(&value.value), value, c)
}

fn checked_http(
    parsed: Result<SecretUrl, url::ParseError>,
    value: &serde_saphyr::Spanned<String>,
    c: &mut super::Collector,
) -> Option<SecretUrl> {
    match parsed {
        Ok(u) if u.redacted().starts_with("http://") || u.redacted().starts_with("https://") => {
            Some(u)
        }
        Ok(_) => {
            c.at(value.referenced, "url must start with http:// or https://");
            None
        }
        Err(e) => {
            c.at(value.referenced, format!("invalid url: {e}"));
            None
        }
    }
}

impl PartialEq for SecretUrl {
    fn eq(&self, other: &SecretUrl) -> bool {
        self.full == other.full && self.redacted == other.redacted
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(
            s.scrub("password hunter2 rejected"),
            "password *** rejected"
        );
    }

    #[test]
    fn urls_are_redacted_and_scrubbed() {
        let u = SecretUrl::parse("postgres://vigil:s3cr%23t@db.internal:5432/app?sslmode=require")
            .unwrap();
        assert_eq!(
            u.redacted(),
            "postgres://vigil:***@db.internal:5432/app?sslmode=require"
        );
        assert_eq!(format!("{u:?}"), u.redacted());
        assert_eq!(u.scrub("auth failed for s3cr#t"), "auth failed for ***");
        assert_eq!(
            u.scrub(&format!("cannot reach {}", u.expose())),
            format!("cannot reach {}", u.redacted())
        );
        let q = SecretUrl::parse("http://h/x?token=abc&a=b").unwrap();
        assert_eq!(q.redacted(), "http://h/x?token=***&a=b");
        let plain = SecretUrl::parse("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(plain.redacted(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn an_endpoint_shows_scheme_host_and_port_only() {
        let u = SecretUrl::parse_endpoint("https://hc-ping.com/0d9f-secret-uuid?x=1").unwrap();
        assert_eq!(u.redacted(), "https://hc-ping.com:443");
        assert_eq!(format!("{u:?}"), "https://hc-ping.com:443");
        assert_eq!(
            u.scrub(&format!("error sending request for url ({})", u.expose())),
            "error sending request for url (https://hc-ping.com:443)"
        );
    }

    #[test]
    fn urls_in_error_texts_keep_only_their_origin() {
        assert_eq!(
            strip_urls(
                "error sending request for url (http://127.0.0.1:9/hook/s3cret?token=x): connection refused. See https://a.b/c/d."
            ),
            "error sending request for url (http://127.0.0.1:9): connection refused. See https://a.b:443."
        );
        assert_eq!(strip_urls("no url here"), "no url here");
        assert_eq!(strip_urls("x://"), "x://");
    }
}
