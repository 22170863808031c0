//! `disk`: how full each configured filesystem is, through statvfs(2).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Observation, Probe, Sample};
use crate::settings::Collector;

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

/// Measures one filesystem: used ratio, free and total bytes.
pub type Measure = dyn Fn(&Path) -> std::io::Result<(f64, f64, f64)> + Send + Sync;

/// Measures filesystems.
pub struct DiskProbe {
    /// What to measure.
    spec: DiskSpec,
    /// How (statvfs; a stand-in in tests).
    measure: Arc<Measure>,
    /// Since when the measuring thread runs, while it runs. A statvfs on a hung
    /// network filesystem never returns; the next check then fails at once instead
    /// of starting another thread, so a hung filesystem costs one thread per probe,
    /// never the shared blocking pool the outbox and DNS need.
    busy: Arc<Mutex<Option<Instant>>>,
}

impl DiskProbe {
    /// A probe for `spec`.
    pub fn new(spec: DiskSpec) -> DiskProbe {
        DiskProbe::with_measure(spec, Arc::new(measure))
    }

    /// A probe for `spec` that measures with `measure`.
    pub fn with_measure(spec: DiskSpec, measure: Arc<Measure>) -> DiskProbe {
        DiskProbe {
            spec,
            measure,
            busy: Arc::new(Mutex::new(None)),
        }
    }

    /// Measures every path on this probe's own thread, unless the last one has not
    /// returned.
    async fn measure_all(
        &self,
    ) -> Result<Vec<(PathBuf, std::io::Result<(f64, f64, f64)>)>, String> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(since) = *busy {
                return Err(format!(
                    "the previous statfs has not returned for {:.0} s; the filesystem may hang",
                    since.elapsed().as_secs_f64()
                ));
            }
            *busy = Some(Instant::now());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (paths, measure, busy) = (
            self.spec.paths.clone(),
            self.measure.clone(),
            self.busy.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("vigil-statfs".into())
            .spawn(move || {
                let measured: Vec<_> = paths
                    .into_iter()
                    .map(|p| {
                        let m = measure(&p);
                        (p, m)
                    })
                    .collect();
                *busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let _ = tx.send(measured);
            });
        if let Err(e) = spawned {
            *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Err(format!("cannot start the measuring thread: {e}"));
        }
        rx.await
            .map_err(|_| "the disk measurement thread failed".to_string())
    }
}

/// Used, free-to-unprivileged and total bytes of the filesystem holding `path`.
/// "Used" counts like df(1): blocks not free, over blocks not free plus blocks
/// available to unprivileged users, so the root reserve counts as full.
fn measure(path: &std::path::Path) -> std::io::Result<(f64, f64, f64)> {
    let s = rustix::fs::statvfs(path)?;
    let frsize = s.f_frsize as f64;
    // saturating: a FUSE or NFS server may report more free blocks than blocks.
    let used = s.f_blocks.saturating_sub(s.f_bfree) as f64 * frsize;
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
        // statvfs on a network filesystem can hang: off the async threads, so the
        // scheduler's timeout still applies, and on at most one thread at a time.
        let measured = match self.measure_all().await {
            Ok(m) => m,
            Err(e) => return Observation::failed(e),
        };
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        for (path, m) in measured {
            let mount = path.display().to_string();
            match m {
                Ok((ratio, free, size)) => {
                    samples.push(Sample::labelled(
                        crate::families::DISK_USED_RATIO,
                        "mount",
                        &mount,
                        ratio,
                    ));
                    samples.push(Sample::labelled(
                        crate::families::DISK_FREE_BYTES,
                        "mount",
                        &mount,
                        free,
                    ));
                    samples.push(Sample::labelled(
                        crate::families::DISK_SIZE_BYTES,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_hung_statfs_costs_one_thread_and_the_next_checks_fail_at_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Mutex::new(hold);
        let counted = calls.clone();
        let probe = DiskProbe::with_measure(
            DiskSpec {
                paths: vec![PathBuf::from("/mnt/nfs")],
                max_used_ratio: None,
            },
            Arc::new(move |_: &Path| {
                counted.fetch_add(1, Ordering::SeqCst);
                // The first call hangs until released, as statvfs on a dead NFS.
                let _ = hold.lock().unwrap().recv();
                Ok((0.5, 1.0, 2.0))
            }),
        );
        // The scheduler's timeout drops the first check; its thread stays stuck.
        let first = tokio::time::timeout(std::time::Duration::from_millis(50), probe.check()).await;
        assert!(first.is_err());
        for _ in 0..5 {
            let o = probe.check().await;
            let e = o.result.unwrap_err();
            assert!(e.contains("has not returned"), "{e}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one thread, not one per check"
        );
        // The filesystem comes back: the stuck thread ends and checks work again.
        release.send(()).unwrap();
        release.send(()).unwrap();
        let o = loop {
            let o = probe.check().await;
            if o.result.is_ok() {
                break o;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(o.samples.len(), 3);
    }
}
