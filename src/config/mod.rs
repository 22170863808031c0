//! The daemon's configuration: one YAML file, read with serde-saphyr.
//!
//! - Unknown keys are refused (`deny_unknown_fields`), so a typo is an error and not a
//!   silently ignored setting.
//! - `${VAR}` and `${VAR:-default}` are replaced from the environment in unquoted
//!   values; an unset `${VAR}` without a default is an error. The substitution
//!   happens inside the YAML parser, per value, so a secret that holds `:` or `#`
//!   cannot change the structure of the file.
//! - Every problem is reported as `file:line:col: message`, all of them at once: the
//!   probes are checked one by one, so one broken probe does not hide the next.
//! - Passwords and tokens are kept as [`crate::settings::secret::Secret`]s and shown
//!   redacted.
//!
//! Each probe kind's settings live with the probe (`src/probe/<kind>.rs`); this module
//! holds what is common.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use crate::probe::ProbeSpec;
use crate::settings::duration::{self, Zero};
use crate::settings::{Collector, Problems, size, valid_name, yaml};

/// Where the daemon listens when the file does not say.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Where state lives when the file does not say.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/vigil";
/// Probe interval when neither the probe nor `defaults` set one.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Probe timeout when neither the probe nor `defaults` set one (and never above the
/// interval).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Address of the HTTP API (`/status`, `/healthz`, `/metrics`).
    pub listen: SocketAddr,
    /// Directory for state that must survive a restart. A relative path is relative
    /// to the config file's directory.
    pub state_dir: PathBuf,
    /// Deployment environment (`dev`, `staging`, `production`), shown in `/status`.
    pub environment: String,
    /// The probes, in file order.
    pub probes: Vec<ProbeConfig>,
    /// Rule files (Prometheus format), relative to the config file's directory.
    pub rule_files: Vec<PathBuf>,
    /// The rule groups read from `rule_files` (filled by [`load`]).
    pub rules: Vec<crate::rules::Group>,
    /// How often rule groups without their own `interval` are evaluated.
    pub evaluation_interval: Duration,
    /// Retention of the series store.
    pub retention: Duration,
    /// Most series the store holds; past it new series are dropped and counted.
    pub max_series: usize,
    /// Most bytes the store holds (`store.max_bytes`; by default half the
    /// container's memory limit, see [`crate::store::default_max_bytes`]).
    pub max_bytes: usize,
    /// `/metrics` pages to scrape into the store (the app's).
    pub scrapes: Vec<crate::scrape::ScrapeConfig>,
    /// First 12 hex digits of the SHA-256 of the file as written, shown in `/status`
    /// so that on-call can tell which config a daemon runs.
    pub hash: String,
    /// SHA-256 of the config file, every rule file and the routing file as read
    /// before they were loaded: a reload whose files all read the same changes
    /// nothing and restarts nothing.
    pub fingerprint: String,
    /// The routing file (`alerts/routing.yaml`), relative to the config file's
    /// directory; without one, alerts are evaluated and shown but page nobody.
    pub routing_file: Option<PathBuf>,
    /// The routing read from `routing_file` (filled by [`load`]).
    pub routing: Option<crate::route::Routing>,
    /// How people reach this Vigil (links in pages); `http://<listen>` by default.
    pub external_url: String,
    /// Labels naming this Vigil's place (`cluster`, `region`): what rule templates see
    /// as `$externalLabels`, as Prometheus's `global.external_labels`.
    pub external_labels: crate::store::Labels,
    /// CloudWatch publishing, if configured.
    pub publish: Option<crate::publish::CloudWatchConfig>,
}

/// One probe's validated settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Unique name; the `probe` label and the component's name in `/status`.
    pub name: String,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Longest a check may take before it counts as failed.
    pub timeout: Duration,
    /// Whether this component being down makes Vigil's overall status `down` (503).
    pub critical: bool,
    /// What to check, by kind.
    pub spec: ProbeSpec,
}

/// The file's top level, generic over how probes are read: fully, or only located
/// (to check each probe on its own when the whole file does not load).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "P: Deserialize<'de>"))]
struct RawConfig<P> {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    environment: Option<Spanned<String>>,
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    probes: Option<Vec<P>>,
    #[serde(default)]
    rule_files: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    evaluation_interval: Option<Spanned<String>>,
    #[serde(default)]
    store: Option<RawStore>,
    #[serde(default)]
    scrape: Option<Vec<crate::scrape::ScrapeSettings>>,
    #[serde(default)]
    routing: Option<Spanned<String>>,
    #[serde(default)]
    external_url: Option<Spanned<String>>,
    #[serde(default)]
    external_labels: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    #[serde(default)]
    publish: Option<crate::publish::PublishSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    retention: Option<Spanned<String>>,
    #[serde(default)]
    max_series: Option<Spanned<u64>>,
    #[serde(default)]
    max_bytes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

/// One entry of `probes:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    name: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    critical: Option<bool>,
    // One key per probe kind; exactly one must be present. Adding a kind is one
    // file in src/probe/, one field here, one variant of `ProbeSpec`, one match arm.
    #[serde(default)]
    http: Option<crate::probe::http::HttpSettings>,
    #[serde(default)]
    postgres: Option<crate::probe::postgres::PostgresSettings>,
    #[serde(default)]
    redis: Option<crate::probe::redis::RedisSettings>,
    #[serde(default)]
    tcp: Option<crate::probe::tcp::TcpSettings>,
    #[serde(default)]
    disk: Option<crate::probe::disk::DiskSettings>,
    #[serde(default)]
    journey: Option<crate::probe::journey::JourneySettings>,
}

impl RawProbe {
    /// The kinds given, as (key, validated spec or `None` when invalid).
    fn kinds(self, c: &mut Collector) -> Vec<(&'static str, Option<ProbeSpec>)> {
        let mut kinds = Vec::new();
        if let Some(s) = self.http {
            kinds.push(("http", s.validate(c).map(ProbeSpec::Http)));
        }
        if let Some(s) = self.postgres {
            kinds.push(("postgres", s.validate(c).map(ProbeSpec::Postgres)));
        }
        if let Some(s) = self.redis {
            kinds.push(("redis", s.validate(c).map(ProbeSpec::Redis)));
        }
        if let Some(s) = self.tcp {
            kinds.push(("tcp", s.validate(c).map(ProbeSpec::Tcp)));
        }
        if let Some(s) = self.disk {
            kinds.push(("disk", s.validate(c).map(ProbeSpec::Disk)));
        }
        if let Some(s) = self.journey {
            kinds.push(("journey", s.validate(c).map(ProbeSpec::Journey)));
        }
        kinds
    }
}

/// Reads and validates the config file at `path`, with `${VAR}` taken from the
/// process environment, then its rule files and its routing file. Each file is read
/// once: what is validated is what the fingerprint was computed from.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let text = yaml::read(path, "config file")?;
    let mut config = parse(path, &text, &env)?;
    let rule_texts: Vec<Result<String, Problems>> = config
        .rule_files
        .iter()
        .map(|f| yaml::read(f, "rule file"))
        .collect();
    let routing_text = config
        .routing_file
        .as_ref()
        .map(|f| yaml::read(f, "routing file"));
    let mut digest = Sha256::new();
    digest.update(text.as_bytes());
    for (f, t) in config.rule_files.iter().zip(&rule_texts) {
        digest.update(f.to_string_lossy().as_bytes());
        digest.update(t.as_deref().unwrap_or_default());
    }
    if let (Some(f), Some(t)) = (&config.routing_file, &routing_text) {
        digest.update(f.to_string_lossy().as_bytes());
        digest.update(t.as_deref().unwrap_or_default());
    }
    config.fingerprint = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut all = Vec::new();
    for (f, t) in config.rule_files.iter().zip(rule_texts) {
        match t.and_then(|t| crate::rules::parse_file(f, &t)) {
            Ok(g) => config.rules.extend(g),
            Err(p) => all.extend(p.list),
        }
    }
    if !all.is_empty() {
        return Err(Problems { list: all });
    }
    // Templates' `$externalURL`, `externalURL` and `pathPrefix`.
    let external = std::sync::Arc::new(crate::rules::template::External {
        labels: config.external_labels.clone(),
        url: config.external_url.clone(),
    });
    for g in &mut config.rules {
        g.set_external(&external);
    }
    if let (Some(f), Some(t)) = (&config.routing_file, routing_text) {
        config.routing = Some(crate::route::parse(f, &t?, &env)?);
    }
    Ok(config)
}

/// Validates config `text` (named `path` in messages), with `${VAR}` taken from `env`.
pub fn parse(path: &Path, text: &str, env: &HashMap<String, String>) -> Result<Config, Problems> {
    yaml::parse(
        path,
        text,
        Some(env),
        |raw: RawConfig<RawProbe>, c| validate(path, text, raw, c),
        |whole, c| collect_structural_problems(text, whole, || yaml::options(Some(env)), c),
    )
}

/// When the whole file does not load, checks every probe on its own so that all
/// broken probes are reported, not only the first.
fn collect_structural_problems(
    text: &str,
    whole: &serde_saphyr::Error,
    options: impl Fn() -> serde_saphyr::Options,
    c: &mut Collector,
) {
    // Locate the probes without expanding `${VAR}`: an unset variable in one probe
    // must not stop the others from being checked.
    let locate = serde_saphyr::options! { with_snippet: false };
    match serde_saphyr::from_str_with_options::<RawConfig<Spanned<IgnoredAny>>>(text, locate) {
        Err(top) => c.yaml(&top),
        Ok(top) => {
            let mut found = false;
            for item in top.probes.unwrap_or_default() {
                let source = probe_source(text, item.referenced);
                if let Err(e) = serde_saphyr::from_str_with_options::<RawProbe>(&source, options())
                {
                    c.yaml(&e);
                    found = true;
                }
            }
            if !found {
                c.yaml(whole);
            }
        }
    }
}

/// The text of one item of a block sequence, starting at `start` (its first key or
/// its `{`), padded with blank lines and spaces so that lines and columns in errors
/// are those of the whole file.
fn probe_source(text: &str, start: Location) -> String {
    let line = start.line() as usize;
    let column = start.column() as usize;
    let indent = column.saturating_sub(1);
    let mut out = String::with_capacity(text.len());
    for _ in 1..line {
        out.push('\n');
    }
    let mut lines = text.lines().skip(line.saturating_sub(1));
    if let Some(first) = lines.next() {
        let rest: String = first.chars().skip(indent).collect();
        out.push_str(&" ".repeat(indent));
        out.push_str(&rest);
        out.push('\n');
    }
    for l in lines {
        let trimmed = l.trim_start();
        let own_indent = l.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || own_indent >= indent {
            out.push_str(l);
            out.push('\n');
        } else {
            break;
        }
    }
    out
}

fn validate(
    path: &Path,
    text: &str,
    raw: RawConfig<RawProbe>,
    c: &mut Collector,
) -> Option<Config> {
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().ok(),
        Some(l) => match l.value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                c.at(
                    l.referenced,
                    format!(
                        "invalid listen address {:?}: expected IP:port, like 127.0.0.1:9464",
                        l.value
                    ),
                );
                None
            }
        },
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let state_dir = match &raw.state_dir {
        None => PathBuf::from(DEFAULT_STATE_DIR),
        Some(s) if s.value.trim().is_empty() => {
            c.at(s.referenced, "state_dir must not be empty");
            PathBuf::new()
        }
        Some(s) => base.join(&s.value),
    };
    let environment = match &raw.environment {
        None => "dev".to_string(),
        Some(e) if valid_name(&e.value) => e.value.clone(),
        Some(e) => {
            c.at(
                e.referenced,
                format!(
                    "invalid environment {:?}: use letters, digits, '-', '_' or '.'",
                    e.value
                ),
            );
            String::new()
        }
    };
    let defaults = raw.defaults.as_ref();
    let default_interval = defaults
        .and_then(|d| duration::at(d.interval.as_ref(), Zero::Refused, c))
        .unwrap_or(DEFAULT_INTERVAL);
    let default_timeout = defaults.and_then(|d| duration::at(d.timeout.as_ref(), Zero::Refused, c));

    let raw_probes = raw.probes.unwrap_or_default();
    if raw_probes.is_empty() {
        c.at_line_col(
            0,
            0,
            "no probes configured: add at least one under `probes:`",
        );
    }
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut probes = Vec::new();
    for p in raw_probes {
        let name = p.name.clone();
        if !valid_name(&name.value) {
            c.at(
                name.referenced,
                format!(
                    "invalid probe name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                    name.value
                ),
            );
        } else if let Some(first) = seen.get(&name.value) {
            c.at(
                name.referenced,
                format!(
                    "duplicate probe name {:?}; the first is at line {}",
                    name.value,
                    first.line()
                ),
            );
        } else {
            seen.insert(name.value.clone(), name.referenced);
        }
        let interval =
            duration::at(p.interval.as_ref(), Zero::Refused, c).unwrap_or(default_interval);
        let timeout = match duration::at(p.timeout.as_ref(), Zero::Refused, c) {
            Some(t) => t,
            None => default_timeout.unwrap_or(DEFAULT_TIMEOUT).min(interval),
        };
        if timeout > interval {
            let at = p
                .timeout
                .as_ref()
                .map(|t| t.referenced)
                .unwrap_or(name.referenced);
            c.at(
                at,
                format!(
                    "timeout {} is longer than the interval {}; a check would overlap the next",
                    duration::format(timeout),
                    duration::format(interval)
                ),
            );
        }
        let critical = p.critical.unwrap_or(true);
        let mut kinds = p.kinds(c);
        match kinds.len() {
            1 => {
                if let (_, Some(spec)) = kinds.remove(0) {
                    probes.push(ProbeConfig {
                        name: name.value.clone(),
                        interval,
                        timeout,
                        critical,
                        spec,
                    });
                }
            }
            0 => c.at(
                name.referenced,
                format!(
                    "probe {:?} says nothing to check: add one of http, postgres, redis, tcp, disk, journey",
                    name.value
                ),
            ),
            _ => c.at(
                name.referenced,
                format!(
                    "probe {:?} has several kinds ({}); split it into one probe per kind",
                    name.value,
                    kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }
    let rule_files = raw
        .rule_files
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let p = base.join(&f.value);
            if !p.exists() {
                c.at(
                    f.referenced,
                    format!("rule file {} does not exist", p.display()),
                );
            }
            p
        })
        .collect();
    let evaluation_interval = duration::at(raw.evaluation_interval.as_ref(), Zero::Refused, c)
        .unwrap_or(crate::rules::DEFAULT_EVALUATION_INTERVAL);
    let retention = raw
        .store
        .as_ref()
        .and_then(|s| duration::at(s.retention.as_ref(), Zero::Refused, c))
        .unwrap_or(crate::store::DEFAULT_RETENTION);
    let max_series = match raw.store.as_ref().and_then(|s| s.max_series.as_ref()) {
        None => crate::store::DEFAULT_MAX_SERIES,
        Some(m) if m.value == 0 => {
            c.at(m.referenced, "max_series must be above zero");
            crate::store::DEFAULT_MAX_SERIES
        }
        Some(m) => m.value as usize,
    };
    let max_bytes = match raw.store.as_ref().and_then(|s| s.max_bytes.as_ref()) {
        None => crate::store::default_max_bytes(),
        Some(v) => match size::at(Some(v), c) {
            Some(n) if n >= 1 << 20 => n,
            Some(_) => {
                c.at(v.referenced, "max_bytes must be at least 1MB");
                crate::store::DEFAULT_MAX_BYTES
            }
            None => crate::store::DEFAULT_MAX_BYTES,
        },
    };
    let scrapes = raw
        .scrape
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.validate(c))
        .collect();
    let routing_file = raw.routing.as_ref().map(|r| {
        let p = base.join(&r.value);
        if !p.exists() {
            c.at(
                r.referenced,
                format!("routing file {} does not exist", p.display()),
            );
        }
        p
    });
    let external_url = match &raw.external_url {
        Some(u) if u.value.starts_with("http://") || u.value.starts_with("https://") => {
            u.value.trim_end_matches('/').to_string()
        }
        Some(u) => {
            c.at(
                u.referenced,
                "external_url must start with http:// or https://",
            );
            String::new()
        }
        None => listen.map(|l| format!("http://{l}")).unwrap_or_default(),
    };
    let external_labels = match &raw.external_labels {
        Some(m) => {
            for k in m.value.keys() {
                if !crate::promql::valid_label_name(k) || k == crate::store::labels::NAME {
                    c.at(m.referenced, format!("invalid external label name {k:?}"));
                }
            }
            crate::store::Labels::new(&m.value)
        }
        None => crate::store::Labels::default(),
    };
    let publish = raw.publish.and_then(|p| p.validate(c, retention));
    let hash = Sha256::digest(text.as_bytes());
    let hash: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Some(Config {
        file: path.to_path_buf(),
        listen: listen?,
        state_dir,
        environment,
        probes,
        rule_files,
        rules: Vec::new(),
        evaluation_interval,
        retention,
        max_series,
        max_bytes,
        scrapes,
        hash,
        fingerprint: String::new(),
        routing_file,
        routing: None,
        external_url,
        external_labels,
        publish,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("DB_PASSWORD".to_string(), "hunter2%23x".to_string()),
            ("NEEDLE".to_string(), "ok: # not a comment".to_string()),
            ("APP_PORT".to_string(), "3000".to_string()),
        ])
    }

    fn parse_str(text: &str) -> Result<Config, Problems> {
        parse(Path::new("vigil.yaml"), text, &env())
    }

    #[test]
    fn a_full_config_loads_with_defaults_and_env() {
        let cfg = parse_str(
            "listen: 127.0.0.1:0\nenvironment: staging\ndefaults:\n  interval: 5s\nprobes:\n  - name: app\n    http:\n      url: http://127.0.0.1:${APP_PORT}/api/health\n      body_contains: ${NEEDLE}\n  - name: database\n    interval: 1s\n    postgres:\n      dsn: postgres://vigil:${DB_PASSWORD}@127.0.0.1:5432/app\n  - name: disk\n    critical: false\n    disk:\n      paths: [/]\n",
        )
        .unwrap();
        assert_eq!(cfg.environment, "staging");
        assert_eq!(cfg.probes.len(), 3);
        assert_eq!(cfg.probes[0].interval, Duration::from_secs(5));
        assert_eq!(cfg.probes[0].timeout, Duration::from_secs(2));
        assert_eq!(
            cfg.probes[1].timeout,
            Duration::from_secs(1),
            "capped at the interval"
        );
        assert!(!cfg.probes[2].critical);
        assert_eq!(cfg.hash.len(), 12);
        let ProbeSpec::Postgres(pg) = &cfg.probes[1].spec else {
            panic!()
        };
        assert_eq!(pg.dsn.redacted(), "postgres://vigil:***@127.0.0.1:5432/app");
        assert!(
            !format!("{cfg:?}").contains("hunter2"),
            "the password leaked into Debug"
        );
        let ProbeSpec::Http(http) = &cfg.probes[0].spec else {
            panic!()
        };
        assert_eq!(http.body_contains.as_deref(), Some("ok: # not a comment"));
    }

    #[test]
    fn every_broken_probe_is_reported() {
        let err = parse_str(
            "probes:\n  - name: a\n    htp:\n      url: x\n  - name: b\n    tcp:\n      address: 1\n      port: 2\n  - name: c\n    tcp:\n      address: localhost:1\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.list.len(), 2, "{text}");
        assert!(
            text.starts_with("vigil.yaml:3:5: unknown field `htp`"),
            "{text}"
        );
        assert!(
            text.contains("vigil.yaml:8:7: unknown field `port`"),
            "{text}"
        );
    }

    #[test]
    fn quoted_references_are_refused() {
        let err = parse_str("probes:\n  - name: a\n    tcp:\n      address: \"${HOST}:1\"\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "vigil.yaml:4:17: ${HOST} inside a quoted value is not expanded; remove the quotes around the value"
        );
    }

    #[test]
    fn probe_source_keeps_positions() {
        let text = "probes:\n  - name: a\n    x: 1\n\n  - name: b\ntop: 1\n";
        let loc = serde_saphyr::from_str::<RawConfig<Spanned<IgnoredAny>>>(
            "probes:\n  - name: a\n    x: 1\n\n  - name: b\n",
        )
        .unwrap()
        .probes
        .unwrap()[0]
            .referenced;
        assert_eq!(probe_source(text, loc), "\n    name: a\n    x: 1\n\n");
    }
}
