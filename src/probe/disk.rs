//! `disk`: how full each configured filesystem is, through statvfs(2).

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Observation, Probe, Sample};
use crate::config::Collector;

/// `disk:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSettings {
    /// Paths on the filesystems to watch (a mount point or any path on it).
    paths: Spanned<Vec<String>>,
    /// Fail the check when a filesystem is fuller than this ratio (0 to 1).
    #[serde(default)]
    max_used_ratio: Option<Spanned<f64>>,
}

/// Validated `disk` settings.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Absolute paths to measure.
    pub paths: Vec<PathBuf>,
    /// The check fails above this used ratio, if set.
    pub max_used_ratio: Option<f64>,
}

impl DiskSettings {
    /// Checks the paths are absolute and the ratio is a ratio.
    pub fn validate(self, c: &mut Collector) -> Option<DiskSpec> {
        let mut ok = true;
        if self.paths.value.is_empty() {
            c.at(self.paths.referenced, "paths must list at least one path");
            ok = false;
        }
        for p in &self.paths.value {
            if !p.starts_with('/') {
                c.at(
                    self.paths.referenced,
                    format!("path {p:?} is not absolute; write it from /"),
                );
                ok = false;
            }
        }
        if let Some(r) = &self.max_used_ratio
            && !(r.value > 0.0 && r.value <= 1.0)
        {
            c.at(
                r.referenced,
                format!(
                    "max_used_ratio {} is not a ratio; write 0.95 for 95 %",
                    r.value
                ),
            );
            ok = false;
        }
        ok.then(|| DiskSpec {
            paths: self.paths.value.iter().map(PathBuf::from).collect(),
            max_used_ratio: self.max_used_ratio.map(|r| r.value),
        })
    }
}

/// Measures filesystems.
pub struct DiskProbe {
    /// What to measure.
    spec: DiskSpec,
}

impl DiskProbe {
    /// A probe for `spec`.
    pub fn new(spec: DiskSpec) -> DiskProbe {
        DiskProbe { spec }
    }
}

/// Used, free-to-unprivileged and total bytes of the filesystem holding `path`.
/// "Used" counts like df(1): blocks not free, over blocks not free plus blocks
/// available to unprivileged users, so the root reserve counts as full.
fn measure(path: &std::path::Path) -> std::io::Result<(f64, f64, f64)> {
    let s = rustix::fs::statvfs(path)?;
    let frsize = s.f_frsize as f64;
    let used = (s.f_blocks - s.f_bfree) as f64 * frsize;
    let avail = s.f_bavail as f64 * frsize;
    let ratio = if used + avail > 0.0 {
        used / (used + avail)
    } else {
        0.0
    };
    Ok((ratio, avail, s.f_blocks as f64 * frsize))
}

impl Probe for DiskProbe {
    async fn check(&self) -> Observation {
        let paths = self.spec.paths.clone();
        // statvfs on a network filesystem can hang: keep it off the async threads so
        // the scheduler's timeout still applies.
        let measured = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| {
                    let m = measure(&p);
                    (p, m)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(measured) = measured else {
            return Observation::failed("the disk measurement task failed");
        };
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        for (path, m) in measured {
            let mount = path.display().to_string();
            match m {
                Ok((ratio, free, size)) => {
                    samples.push(Sample::labelled(
                        "vigil_disk_used_ratio",
                        "mount",
                        &mount,
                        ratio,
                    ));
                    samples.push(Sample::labelled(
                        "vigil_disk_free_bytes",
                        "mount",
                        &mount,
                        free,
                    ));
                    samples.push(Sample::labelled(
                        "vigil_disk_size_bytes",
                        "mount",
                        &mount,
                        size,
                    ));
                    if let Some(max) = self.spec.max_used_ratio
                        && ratio > max
                    {
                        problems.push(format!(
                            "{mount} is {:.1} % full (limit {:.1} %)",
                            ratio * 100.0,
                            max * 100.0
                        ));
                    }
                }
                Err(e) => problems.push(format!("cannot measure {mount}: {e}")),
            }
        }
        Observation {
            result: if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            },
            samples,
        }
    }

    fn target(&self) -> String {
        self.spec
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
