//! `tcp`: can a connection be opened to `host:port`?

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Observation, Probe};
use crate::settings::Collector;

/// `tcp:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// `host:port`.
    address: Spanned<String>,
}

/// Validated `tcp` settings.
#[derive(Debug, Clone)]
pub struct TcpSpec {
    /// `host:port`; the host is resolved at each check, so DNS changes are followed.
    pub address: String,
}

impl TcpSettings {
    /// Checks the address has a host and a port.
    pub fn validate(self, c: &mut Collector) -> Option<TcpSpec> {
        let a = &self.address;
        let ok = a.value.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            c.at(
                a.referenced,
                format!(
                    "invalid address {:?}: expected host:port, like db.internal:5432",
                    a.value
                ),
            );
            return None;
        }
        Some(TcpSpec {
            address: a.value.clone(),
        })
    }
}

/// Opens and closes a TCP connection.
pub struct TcpProbe {
    /// What to connect to.
    spec: TcpSpec,
}

impl TcpProbe {
    /// A probe for `spec`.
    pub fn new(spec: TcpSpec) -> TcpProbe {
        TcpProbe { spec }
    }
}

impl Probe for TcpProbe {
    async fn check(&self) -> Observation {
        match tokio::net::TcpStream::connect(&self.spec.address).await {
            Ok(_) => Observation::ok(Vec::new()),
            Err(e) => Observation::failed(format!("cannot connect to {}: {e}", self.spec.address)),
        }
    }

    fn target(&self) -> String {
        self.spec.address.clone()
    }
}
