//! Scraping a Prometheus `/metrics` page (the app's) into the series store, the way
//! Prometheus does: every sample gets `job` and `instance` labels, each scrape adds
//! `up`, `scrape_duration_seconds` and `scrape_samples_scraped`, and series missing
//! from a scrape are marked stale by the store's owner.

pub mod text;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use serde_saphyr::Spanned;

use crate::rules::manager::Input;
use crate::settings::duration::{self, Zero};
use crate::settings::secret::{self, SecretUrl};
use crate::settings::{Collector, size, valid_name};
use crate::store::Labels;

/// Scrape interval when a scrape does not say.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The largest body a scrape reads, after decompression, when the config does not
/// say (Prometheus's `body_size_limit`; 0 in the config means no limit).
pub const DEFAULT_BODY_SIZE_LIMIT: usize = 10 << 20;

/// The most samples one scrape may hold when the config does not say (Prometheus's
/// `sample_limit`; 0 in the config means no limit). The app's page holds a few
/// hundred; a scrape past the limit fails whole, as in Prometheus.
pub const DEFAULT_SAMPLE_LIMIT: usize = 10_000;

/// How far ahead of the scrape an exposition timestamp may be and still be stored.
const FUTURE_SLACK_MS: i64 = 10 * 60 * 1000;

/// One scrape target, from the config.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    /// The `job` label.
    pub job: String,
    /// The page's URL.
    pub url: SecretUrl,
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest a scrape may take.
    pub timeout: Duration,
    /// The most bytes a body may hold, after decompression (`usize::MAX`: no limit).
    pub body_size_limit: usize,
    /// The most samples a scrape may hold (`usize::MAX`: no limit).
    pub sample_limit: usize,
}

/// One entry of `scrape:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeSettings {
    job: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    body_size_limit: Option<Spanned<String>>,
    #[serde(default)]
    sample_limit: Option<Spanned<u64>>,
}

impl ScrapeSettings {
    /// The target these settings describe, or `None` with the problems noted.
    pub fn validate(self, c: &mut Collector) -> Option<ScrapeConfig> {
        let interval =
            duration::at(self.interval.as_ref(), Zero::Refused, c).unwrap_or(DEFAULT_INTERVAL);
        let timeout = duration::at(self.timeout.as_ref(), Zero::Refused, c)
            .unwrap_or(interval.min(Duration::from_secs(5)));
        if !valid_name(&self.job.value) {
            c.at(
                self.job.referenced,
                format!("invalid job name {:?}", self.job.value),
            );
        }
        let body_size_limit = match size::at(self.body_size_limit.as_ref(), c) {
            None => DEFAULT_BODY_SIZE_LIMIT,
            Some(0) => usize::MAX,
            Some(n) => n,
        };
        let sample_limit = match &self.sample_limit {
            None => DEFAULT_SAMPLE_LIMIT,
            Some(v) if v.value == 0 => usize::MAX,
            Some(v) => usize::try_from(v.value).unwrap_or(usize::MAX),
        };
        Some(ScrapeConfig {
            job: self.job.value,
            url: secret::http_url(&self.url, c)?,
            interval,
            timeout,
            body_size_limit,
            sample_limit,
        })
    }
}

impl ScrapeConfig {
    /// The `instance` label: the URL's host and port.
    pub fn instance(&self) -> String {
        url::Url::parse(self.url.expose())
            .ok()
            .map(|u| {
                let host = u.host_str().unwrap_or("").to_string();
                match u.port_or_known_default() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .unwrap_or_default()
    }
}

/// How a scrape target fares, for `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetView {
    /// The `job` label.
    pub job: String,
    /// The URL, its secrets redacted.
    pub url: String,
    /// Whether the last scrape succeeded (`up` is 1).
    pub up: bool,
    /// When the last scrape started.
    pub last_scrape: Option<DateTime<Utc>>,
    /// How long it took.
    #[serde(with = "crate::float")]
    pub duration_seconds: f64,
    /// Samples it held (or, past `sample_limit`, would have held).
    pub samples: usize,
    /// Why it failed.
    pub error: Option<String>,
    /// Which configuration started the target (a reload starts new ones).
    #[serde(skip)]
    pub generation: u64,
}

impl TargetView {
    /// A target not yet scraped.
    pub fn new(cfg: &ScrapeConfig, generation: u64) -> TargetView {
        TargetView {
            job: cfg.job.clone(),
            url: cfg.url.redacted().to_string(),
            up: false,
            last_scrape: None,
            duration_seconds: 0.0,
            samples: 0,
            error: None,
            generation,
        }
    }
}

/// The scrape targets' views, in config order, shared with the API.
pub type Targets = Arc<watch::Sender<Vec<TargetView>>>;

/// One scrape's outcome.
#[derive(Debug)]
pub struct Scraped {
    /// Samples at the scrape's time: the page's samples without a timestamp, with
    /// target labels, and the scrape's own series (`up` and the rest).
    pub samples: Vec<(Labels, f64)>,
    /// Samples whose line carried a timestamp, stored at that time and not marked
    /// stale when they vanish (as Prometheus does).
    pub timed: Vec<(Labels, i64, f64)>,
    /// Why the scrape failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration: Duration,
    /// Sample lines the page held (`scrape_samples_scraped`), counted past
    /// `sample_limit` too.
    pub scraped: usize,
}

/// Scrapes once at `t` (ms): the samples with target labels added, and the scrape's
/// own series. The body is read up to `body_size_limit` and parsed up to
/// `sample_limit`; past either, the scrape fails whole and `up` is 0.
pub async fn scrape_once(client: &reqwest::Client, cfg: &ScrapeConfig, t: i64) -> Scraped {
    let start = Instant::now();
    let instance = cfg.instance();
    let target = [("job", cfg.job.as_str()), ("instance", instance.as_str())];
    let mut seen = 0;
    let result = async {
        let mut resp = client
            .get(cfg.url.expose())
            .header(reqwest::header::ACCEPT, ACCEPT)
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(|e| cfg.url.scrub(&crate::peer::error_text(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = crate::peer::read_body(&mut resp, cfg.body_size_limit)
            .await
            .map_err(|e| match e {
                crate::peer::BodyError::TooLarge(n) => {
                    format!("the body exceeds body_size_limit ({n} bytes)")
                }
                crate::peer::BodyError::Read(e) => cfg.url.scrub(&e),
            })?;
        let body = std::str::from_utf8(&body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
        text::parse(body, cfg.sample_limit, &mut seen)
    }
    .await;
    let mut out = Scraped {
        samples: Vec::new(),
        timed: Vec::new(),
        error: None,
        duration: Duration::ZERO,
        scraped: 0,
    };
    let up = match result {
        Ok(samples) => {
            for s in samples {
                let labels = with_target(&s.labels, &target);
                match s.t {
                    None => out.samples.push((labels, s.value)),
                    // Too old for the store, or too far ahead: dropped, as
                    // Prometheus drops out-of-bounds samples, without failing.
                    Some(st) if st <= t + FUTURE_SLACK_MS => out.timed.push((labels, st, s.value)),
                    Some(_) => {}
                }
            }
            1.0
        }
        Err(e) => {
            tracing::warn!(message = "Scrape failed.", job = %cfg.job, url = %cfg.url.redacted(), error = %e);
            out.error = Some(e);
            0.0
        }
    };
    out.duration = start.elapsed();
    let own = |name: &'static str, v: f64| {
        (
            Labels::new(target.iter().copied().chain([("__name__", name)])),
            v,
        )
    };
    out.samples.push(own("up", up));
    out.samples
        .push(own("scrape_duration_seconds", out.duration.as_secs_f64()));
    out.samples.push(own("scrape_samples_scraped", seen as f64));
    out.scraped = seen;
    out
}

/// What a scrape asks for: the text format (Vigil does not read protobuf), and gzip
/// through the client.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Adds target labels; a scraped label of the same name is kept as `exported_<name>`
/// (Prometheus's `honor_labels: false`).
fn with_target(labels: &Labels, target: &[(&str, &str)]) -> Labels {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| {
            if target.iter().any(|(t, _)| *t == k) {
                (format!("exported_{k}"), v.to_string())
            } else {
                (k.to_string(), v.to_string())
            }
        })
        .collect();
    pairs.extend(target.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Labels::new(pairs)
}

/// Scrapes `cfg` every interval until the receiver is gone, reporting each outcome
/// to `targets[index]` while `generation` is the running one.
pub async fn run(
    index: usize,
    cfg: ScrapeConfig,
    out: mpsc::Sender<Input>,
    targets: Targets,
    generation: u64,
) {
    let client = match reqwest::Client::builder()
        .gzip(true)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(message = "Cannot build the scrape client.", error = %e);
            // Ending would stop the daemon; the scrape simply never runs.
            std::future::pending::<()>().await;
            return;
        }
    };
    let mut ticks = crate::probe::scheduler::jittered_ticks(cfg.interval);
    loop {
        ticks.tick().await;
        let now = chrono::Utc::now();
        let t = now.timestamp_millis();
        let scraped = scrape_once(&client, &cfg, t).await;
        targets.send_if_modified(|views| match views.get_mut(index) {
            Some(v) if v.generation == generation => {
                v.up = scraped.error.is_none();
                v.last_scrape = Some(now);
                v.duration_seconds = scraped.duration.as_secs_f64();
                v.samples = scraped.scraped;
                v.error = scraped.error.clone();
                true
            }
            _ => false,
        });
        let input = Input::Samples {
            source: format!("scrape/{index}"),
            t,
            samples: scraped.samples,
            timed: scraped.timed,
            changed: false,
        };
        if out.send(input).await.is_err() {
            return;
        }
    }
}
