//! Scraping a Prometheus `/metrics` page (the app's) into the series store, the way
//! Prometheus does: every sample gets `job` and `instance` labels, each scrape adds
//! `up`, `scrape_duration_seconds` and `scrape_samples_scraped`, and series missing
//! from a scrape are marked stale by the store's owner.

pub mod text;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::secret::SecretUrl;
use crate::rules::manager::Input;
use crate::store::Labels;

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

/// Scrapes once: the samples with target labels added, and the scrape's own series.
pub async fn scrape_once(client: &reqwest::Client, cfg: &ScrapeConfig) -> Vec<(Labels, f64)> {
    let start = Instant::now();
    let instance = cfg.instance();
    let target = [("job", cfg.job.as_str()), ("instance", instance.as_str())];
    let result = async {
        let resp = client
            .get(cfg.url.expose())
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(|e| cfg.url.scrub(&e.to_string()))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        text::parse(&body)
    }
    .await;
    let (mut out, up) = match result {
        Ok(samples) => (
            samples
                .into_iter()
                .map(|(labels, v)| (with_target(&labels, &target), v))
                .collect::<Vec<_>>(),
            1.0,
        ),
        Err(e) => {
            tracing::warn!(message = "Scrape failed.", job = %cfg.job, url = %cfg.url.redacted(), error = %e);
            (Vec::new(), 0.0)
        }
    };
    let scraped = out.len() as f64;
    out.push((
        Labels::new(target.iter().copied().chain([("__name__", "up")])),
        up,
    ));
    out.push((
        Labels::new(
            target
                .iter()
                .copied()
                .chain([("__name__", "scrape_duration_seconds")]),
        ),
        start.elapsed().as_secs_f64(),
    ));
    out.push((
        Labels::new(
            target
                .iter()
                .copied()
                .chain([("__name__", "scrape_samples_scraped")]),
        ),
        scraped,
    ));
    out
}

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

/// Scrapes `cfg` every interval until the receiver is gone.
pub async fn run(index: usize, cfg: ScrapeConfig, out: mpsc::Sender<Input>) {
    let client = match reqwest::Client::builder().build() {
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
        let t = chrono::Utc::now().timestamp_millis();
        let samples = scrape_once(&client, &cfg).await;
        let input = Input::Samples {
            source: format!("scrape/{index}"),
            t,
            samples,
            changed: false,
        };
        if out.send(input).await.is_err() {
            return;
        }
    }
}
