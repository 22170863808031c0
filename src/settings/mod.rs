//! The settings toolkit every file reader shares: problems as `file:line:col`
//! ([`problems`]), durations ([`duration`]) and sizes ([`size`]) as Prometheus
//! writes them, secrets that never print ([`secret`]), and the one way Vigil reads
//! a YAML file ([`yaml`]).
//!
//! This module imports nothing of Vigil's: each kind of probe, notifier and publisher
//! validates its own settings with it, and the config module sits above them all.

pub mod duration;
pub mod problems;
pub mod secret;
pub mod size;
pub mod yaml;

pub use problems::{Collector, Problem, Problems};

/// Whether `name` is fit for a probe, a job or an environment: 1 to 64 letters,
/// digits, `-`, `_` or `.`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
