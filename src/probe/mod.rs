//! Probes: one trait, one file per kind.
//!
//! A probe checks one thing once and says what it saw: an [`Observation`] holding
//! success or the reason for failure, and the figures it measured as [`Sample`]s.
//! It does not time itself, retry, or decide what "down" means: the
//! [`scheduler`] bounds each check by the probe's timeout and runs it on its
//! interval, and [`crate::health`] turns observations into component states.
//!
//! Adding a kind: a file here with its settings (`XSettings` → `validate` → `XSpec`)
//! and its probe (`impl Probe`), a field in `config::RawProbe`, a variant of
//! [`ProbeSpec`] and of [`AnyProbe`]; the compiler finds the match arms.

pub mod disk;
pub mod http;
pub mod journey;
pub mod postgres;
pub mod redis;
pub mod scheduler;
pub mod tcp;

use std::future::Future;

/// One figure a probe measured, named by the scheme in `docs/metrics.md`. The
/// `probe` label is added by whoever publishes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Metric name, e.g. `vigil_disk_used_ratio`.
    pub name: String,
    /// Labels besides `probe`, e.g. `mount`; values come from the config, so the set
    /// is bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// The value.
    #[serde(with = "crate::float")]
    pub value: f64,
}

impl Sample {
    /// A sample without labels.
    pub fn new(name: &str, value: f64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: Vec::new(),
            value,
        }
    }

    /// A sample with one label.
    pub fn labelled(name: &str, label: &str, label_value: &str, value: f64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: vec![(label.to_string(), label_value.to_string())],
            value,
        }
    }
}

/// What one check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `Ok` when the target is healthy, else what is wrong, in a sentence that names
    /// the target and never holds a secret.
    pub result: Result<(), String>,
    /// Figures measured on the way, also when the check failed.
    pub samples: Vec<Sample>,
}

impl Observation {
    /// A healthy observation with its figures.
    pub fn ok(samples: Vec<Sample>) -> Observation {
        Observation {
            result: Ok(()),
            samples,
        }
    }

    /// A failed observation.
    pub fn failed(reason: impl Into<String>) -> Observation {
        Observation {
            result: Err(crate::peer::bounded(reason)),
            samples: Vec::new(),
        }
    }
}

/// A health check of one target.
pub trait Probe: Send + Sync + 'static {
    /// Runs one check. It may take as long as it likes: the scheduler drops the future
    /// when the probe's timeout passes, so implementations must leave nothing broken
    /// behind when cancelled (take a connection out of its slot while using it).
    fn check(&self) -> impl Future<Output = Observation> + Send;

    /// Resolves when a connection the probe keeps between checks is seen closed by the
    /// peer (a killed server, a failover, an idle timeout), having dropped it, so that
    /// the check the scheduler runs at once connects afresh: a lost connection is a
    /// reason to look, not a verdict. Never resolves for probes that keep nothing, or
    /// while nothing is kept. The scheduler drops it when the tick comes first, so it
    /// must be cancel-safe.
    fn lost(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// What is checked, for `/status` and the `target` label, with secrets redacted.
    fn target(&self) -> String;
}

/// A probe kind's validated settings, from the config.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// An HTTP(S) endpoint.
    Http(http::HttpSpec),
    /// A PostgreSQL server.
    Postgres(postgres::PostgresSpec),
    /// A Redis server.
    Redis(redis::RedisSpec),
    /// A TCP port.
    Tcp(tcp::TcpSpec),
    /// Local filesystems.
    Disk(disk::DiskSpec),
    /// A synthetic viewer of the Watch Together server.
    Journey(journey::JourneySpec),
}

impl ProbeSpec {
    /// The kind's name, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Postgres(_) => "postgres",
            ProbeSpec::Redis(_) => "redis",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Disk(_) => "disk",
            ProbeSpec::Journey(_) => "journey",
        }
    }

    /// Builds the probe. Fails only when the platform refuses a resource (a TLS
    /// backend, say); the settings are already valid.
    pub fn build(&self, timeout: std::time::Duration) -> Result<AnyProbe, String> {
        Ok(match self {
            ProbeSpec::Http(s) => AnyProbe::Http(http::HttpProbe::new(s.clone(), timeout)?),
            ProbeSpec::Postgres(s) => {
                AnyProbe::Postgres(Box::new(postgres::PostgresProbe::new(s.clone())?))
            }
            ProbeSpec::Redis(s) => {
                AnyProbe::Redis(Box::new(redis::RedisProbe::new(s.clone(), timeout)?))
            }
            ProbeSpec::Tcp(s) => AnyProbe::Tcp(tcp::TcpProbe::new(s.clone())),
            ProbeSpec::Disk(s) => AnyProbe::Disk(disk::DiskProbe::new(s.clone())),
            ProbeSpec::Journey(s) => {
                AnyProbe::Journey(journey::JourneyProbe::new(s.clone(), timeout)?)
            }
        })
    }
}

/// Any probe; static dispatch over the kinds.
pub enum AnyProbe {
    /// See [`http::HttpProbe`].
    Http(http::HttpProbe),
    /// See [`postgres::PostgresProbe`]; boxed, as its options and listener are large.
    Postgres(Box<postgres::PostgresProbe>),
    /// See [`redis::RedisProbe`]; boxed, as it holds two clients.
    Redis(Box<redis::RedisProbe>),
    /// See [`tcp::TcpProbe`].
    Tcp(tcp::TcpProbe),
    /// See [`disk::DiskProbe`].
    Disk(disk::DiskProbe),
    /// See [`journey::JourneyProbe`].
    Journey(journey::JourneyProbe),
}

impl Probe for AnyProbe {
    async fn check(&self) -> Observation {
        match self {
            AnyProbe::Http(p) => p.check().await,
            AnyProbe::Postgres(p) => p.check().await,
            AnyProbe::Redis(p) => p.check().await,
            AnyProbe::Tcp(p) => p.check().await,
            AnyProbe::Disk(p) => p.check().await,
            AnyProbe::Journey(p) => p.check().await,
        }
    }

    async fn lost(&self) {
        match self {
            AnyProbe::Postgres(p) => p.lost().await,
            AnyProbe::Redis(p) => p.lost().await,
            AnyProbe::Http(_) | AnyProbe::Tcp(_) | AnyProbe::Disk(_) | AnyProbe::Journey(_) => {
                std::future::pending().await
            }
        }
    }

    fn target(&self) -> String {
        match self {
            AnyProbe::Http(p) => p.target(),
            AnyProbe::Postgres(p) => p.target(),
            AnyProbe::Redis(p) => p.target(),
            AnyProbe::Tcp(p) => p.target(),
            AnyProbe::Disk(p) => p.target(),
            AnyProbe::Journey(p) => p.target(),
        }
    }
}
