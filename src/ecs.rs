//! The ECS task metadata endpoint (v4): which task this is (for CloudWatch
//! dimensions and `/status`), and the task's CPU and memory against its limits as
//! series the rules read (`TaskMemoryExhausted`).
//!
//! ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container; off ECS it is unset
//! and none of this runs. `${uri}/task` gives the task ARN, cluster, availability
//! zone and the task's limits (CPU in vCPUs, memory in MiB); `${uri}/task/stats`
//! gives Docker's stats per container.
//!
//! - Memory used is Docker's: `usage` minus the page cache that can be reclaimed
//!   (`inactive_file` on cgroup v2, `total_inactive_file` on v1, `cache` before
//!   that), summed over the containers, against the task's limit.
//! - CPU used is the containers' CPU time between two polls over the wall time
//!   between them, against the task's vCPUs. Vigil keeps its own previous poll
//!   rather than trusting `precpu_stats`, which Fargate has been seen to leave at 0.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::rules::manager::Input;
use crate::store::Labels;

/// The variable ECS sets.
pub(crate) const ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// How long one metadata request may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Which task this is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct TaskInfo {
    /// The task's ARN.
    pub task_arn: String,
    /// Its id (the ARN's last part).
    pub task_id: String,
    /// The cluster's name.
    pub cluster: String,
    /// The availability zone.
    pub availability_zone: String,
    /// Task definition family and revision, `family:revision`.
    pub task_definition: String,
    /// The task's CPU limit in vCPUs, if set.
    #[serde(with = "crate::float::option", default)]
    pub cpu_limit_vcpus: Option<f64>,
    /// The task's memory limit in bytes, if set.
    #[serde(with = "crate::float::option", default)]
    pub memory_limit_bytes: Option<f64>,
}

/// What `/status` shows of the task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct EcsView {
    /// The task, once read.
    pub task: Option<TaskInfo>,
    /// The latest usage series.
    #[serde(skip)]
    pub series: Vec<(Labels, f64)>,
    /// Memory used over the limit, from the last poll.
    #[serde(with = "crate::float::option", default)]
    pub memory_used_ratio: Option<f64>,
    /// CPU used over the limit, from the last two polls.
    #[serde(with = "crate::float::option", default)]
    pub cpu_used_ratio: Option<f64>,
    /// When the stats were last read.
    pub last_poll: Option<DateTime<Utc>>,
    /// The last error, if the last poll failed.
    pub last_error: Option<String>,
}

/// The last segment of an ARN (`…/cluster/name` → `name`); a plain name as is.
fn last_part(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// Reads the task document.
pub(crate) fn task_info(doc: &Value) -> Result<TaskInfo, String> {
    let arn = doc
        .get("TaskARN")
        .and_then(Value::as_str)
        .ok_or("the task document has no TaskARN")?;
    let limits = doc.get("Limits");
    Ok(TaskInfo {
        task_arn: arn.to_string(),
        task_id: last_part(arn),
        cluster: doc
            .get("Cluster")
            .and_then(Value::as_str)
            .map(last_part)
            .unwrap_or_default(),
        availability_zone: doc
            .get("AvailabilityZone")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        task_definition: format!(
            "{}:{}",
            doc.get("Family").and_then(Value::as_str).unwrap_or(""),
            doc.get("Revision").and_then(Value::as_str).unwrap_or("")
        ),
        cpu_limit_vcpus: limits
            .and_then(|l| l.get("CPU"))
            .and_then(Value::as_f64)
            .filter(|c| *c > 0.0),
        memory_limit_bytes: limits
            .and_then(|l| l.get("Memory"))
            .and_then(Value::as_f64)
            .filter(|m| *m > 0.0)
            .map(|mib| mib * 1_048_576.0),
    })
}

/// A container's CPU time (ns) at a read time, kept between polls.
type CpuMark = (DateTime<Utc>, f64);

/// Docker's "memory used": usage less the reclaimable page cache.
fn memory_used(stats: &Value) -> Option<f64> {
    let m = stats.get("memory_stats")?;
    let usage = m.get("usage")?.as_f64()?;
    let inner = m.get("stats");
    let cache = ["inactive_file", "total_inactive_file", "cache"]
        .iter()
        .find_map(|k| inner.and_then(|s| s.get(*k)).and_then(Value::as_f64))
        .unwrap_or(0.0);
    Some(if cache < usage { usage - cache } else { usage })
}

/// The usage series of one stats document. `previous` holds each container's last
/// CPU mark and is updated.
pub fn usage(
    stats: &Value,
    task: &TaskInfo,
    names: &HashMap<String, String>,
    previous: &mut HashMap<String, CpuMark>,
) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    let Some(containers) = stats.as_object() else {
        return out;
    };
    let mut memory = 0.0;
    let mut memory_seen = false;
    let mut cpu_seconds = 0.0;
    let mut cpu_wall: Option<f64> = None;
    let mut online_cpus = None;
    let mut container_limits = 0.0;
    for (id, s) in containers {
        // A stopped container's stats are null.
        if s.is_null() {
            continue;
        }
        let name = names
            .get(id)
            .cloned()
            .or_else(|| s.get("name").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| id.clone());
        if let Some(m) = memory_used(s) {
            memory += m;
            memory_seen = true;
            out.push((
                Labels::from_pairs(
                    crate::families::CONTAINER_MEMORY_USED_BYTES,
                    &[("container", &name)],
                ),
                m,
            ));
        }
        if let Some(l) = s.pointer("/memory_stats/limit").and_then(Value::as_f64)
            && l < 1e18
        {
            container_limits += l;
        }
        online_cpus = online_cpus.or(s.pointer("/cpu_stats/online_cpus").and_then(Value::as_f64));
        let read = s
            .get("read")
            .and_then(Value::as_str)
            .and_then(|r| DateTime::parse_from_rfc3339(r).ok())
            .map(|r| r.with_timezone(&Utc));
        let total = s
            .pointer("/cpu_stats/cpu_usage/total_usage")
            .and_then(Value::as_f64);
        if let (Some(read), Some(total)) = (read, total)
            && let Some((then, before)) = previous.insert(id.clone(), (read, total))
        {
            let wall = (read - then).num_nanoseconds().unwrap_or(0) as f64;
            if wall > 0.0 && total >= before {
                let used = (total - before) / wall;
                cpu_seconds += used;
                cpu_wall = Some(wall);
                if let Some(vcpus) = task.cpu_limit_vcpus {
                    out.push((
                        Labels::from_pairs(
                            crate::families::CONTAINER_CPU_USED_RATIO,
                            &[("container", &name)],
                        ),
                        used / vcpus,
                    ));
                }
            }
        }
    }
    let limit = task
        .memory_limit_bytes
        .or((container_limits > 0.0).then_some(container_limits));
    if memory_seen {
        out.push((
            Labels::from_pairs(crate::families::TASK_MEMORY_USED_BYTES, &[]),
            memory,
        ));
        if let Some(l) = limit {
            out.push((
                Labels::from_pairs(crate::families::TASK_MEMORY_LIMIT_BYTES, &[]),
                l,
            ));
            out.push((
                Labels::from_pairs(crate::families::TASK_MEMORY_USED_RATIO, &[]),
                memory / l,
            ));
        }
    }
    if cpu_wall.is_some()
        && let Some(vcpus) = task.cpu_limit_vcpus.or(online_cpus)
    {
        out.push((
            Labels::from_pairs(crate::families::TASK_CPU_USED_RATIO, &[]),
            cpu_seconds / vcpus,
        ));
    }
    out
}

/// Container names by Docker id, from the task document.
pub(crate) fn container_names(doc: &Value) -> HashMap<String, String> {
    doc.get("Containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    Some((
                        c.get("DockerId")?.as_str()?.to_string(),
                        c.get("Name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A client of the endpoint at `base`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The endpoint's URL, without a trailing slash.
    base: String,
    /// The HTTP client.
    http: reqwest::Client,
}

impl Endpoint {
    /// The endpoint named by [`ENV`], if set.
    pub fn from_env() -> Option<Endpoint> {
        std::env::var(ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| Endpoint::new(&v))
    }

    /// An endpoint at `base`.
    pub fn new(base: &str) -> Endpoint {
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            http: crate::peer::client(TIMEOUT).expect("the platform gives an HTTP client"),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::peer::error_text(&e)))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        let body = crate::peer::read_body(&mut r, crate::peer::JSON_BODY_BYTES * 4)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The task document.
    pub async fn task(&self) -> Result<Value, String> {
        self.get("/task").await
    }

    /// The stats document.
    pub async fn stats(&self) -> Result<Value, String> {
        self.get("/task/stats").await
    }
}

/// Reads the task once, retrying briefly (the endpoint can lag the container's
/// start by a moment).
pub async fn read_task(endpoint: &Endpoint) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        match endpoint.task().await {
            Ok(doc) => return Ok(doc),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
    }
    Err(last)
}

/// Polls the stats every `interval` (the evaluation interval; a reload that changes
/// it sends the new one), handing the series to the manager as source `ecs` and
/// showing them in `view`; `task` and `names` are what the task document said (none
/// when it could not be read).
pub async fn run(
    endpoint: Endpoint,
    task: Option<TaskInfo>,
    names: HashMap<String, String>,
    mut interval: watch::Receiver<Duration>,
    engine: mpsc::Sender<Input>,
    view: watch::Sender<EcsView>,
) {
    view.send_modify(|v| v.task = task.clone());
    let task = task.unwrap_or_default();
    let mut previous = HashMap::new();
    let every = |d: Duration| {
        let mut ticks = tokio::time::interval(d);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    };
    let mut ticks = every(*interval.borrow_and_update());
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            Ok(()) = interval.changed() => {
                // Polled at once, then at the new interval.
                ticks = every(*interval.borrow_and_update());
                continue;
            }
        }
        match endpoint.stats().await {
            Ok(stats) => {
                let series = usage(&stats, &task, &names, &mut previous);
                let get = |name: &str| {
                    series
                        .iter()
                        .find(|(l, _)| l.name() == name)
                        .map(|(_, v)| *v)
                };
                let (memory, cpu) = (
                    get(crate::families::TASK_MEMORY_USED_RATIO),
                    get(crate::families::TASK_CPU_USED_RATIO),
                );
                view.send_modify(|v| {
                    v.series = series.clone();
                    v.memory_used_ratio = memory;
                    v.cpu_used_ratio = cpu.or(v.cpu_used_ratio);
                    v.last_poll = Some(Utc::now());
                    v.last_error = None;
                });
                let input = Input::Samples {
                    source: "ecs".into(),
                    t: Utc::now().timestamp_millis(),
                    samples: series,
                    timed: Vec::new(),
                    changed: false,
                };
                if engine.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(message = "Cannot read the ECS task stats.", error = %e);
                view.send_modify(|v| v.last_error = Some(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task_doc() -> Value {
        json!({
            "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/prod/bfa2636268144d039771334145e490c5",
            "Family": "watch-together", "Revision": "7",
            "Limits": {"CPU": 0.5, "Memory": 1024},
            "AvailabilityZone": "us-east-1d",
            "Containers": [
                {"DockerId": "a-1", "Name": "app"},
                {"DockerId": "a-2", "Name": "vigil"}
            ]
        })
    }

    fn stats(read: &str, app_cpu: f64, vigil_cpu: f64) -> Value {
        let c = |usage: f64, inactive: f64, cpu: f64| {
            json!({
                "read": read,
                "memory_stats": {"usage": usage, "limit": 9223372036854772000u64,
                                 "stats": {"inactive_file": inactive, "cache": 1.0}},
                "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "online_cpus": 2}
            })
        };
        json!({"a-1": c(600.0 * 1_048_576.0, 100.0 * 1_048_576.0, app_cpu),
               "a-2": c(50.0 * 1_048_576.0, 0.0, vigil_cpu),
               "a-3": null})
    }

    #[test]
    fn the_task_document_names_the_task() {
        let t = task_info(&task_doc()).expect("valid");
        assert_eq!(t.task_id, "bfa2636268144d039771334145e490c5");
        assert_eq!(t.cluster, "prod");
        assert_eq!(t.availability_zone, "us-east-1d");
        assert_eq!(t.task_definition, "watch-together:7");
        assert_eq!(t.cpu_limit_vcpus, Some(0.5));
        assert_eq!(t.memory_limit_bytes, Some(1024.0 * 1_048_576.0));
        assert!(task_info(&json!({})).is_err());
    }

    #[test]
    fn memory_and_cpu_against_the_task_limits() {
        let t = task_info(&task_doc()).expect("valid");
        let names = container_names(&task_doc());
        let mut prev = HashMap::new();
        let first = usage(
            &stats("2026-01-01T00:00:00.000000000Z", 1e9, 1e8),
            &t,
            &names,
            &mut prev,
        );
        let get = |s: &[(Labels, f64)], n: &str| s.iter().find(|(l, _)| l.name() == n).map(|x| x.1);
        // (600 − 100) + 50 MiB of 1024 MiB.
        assert_eq!(
            get(&first, "vigil_task_memory_used_ratio"),
            Some(550.0 / 1024.0)
        );
        assert!(
            get(&first, "vigil_task_cpu_used_ratio").is_none(),
            "one poll has no CPU rate"
        );
        let app_mem = first
            .iter()
            .find(|(l, _)| {
                l.name() == "vigil_container_memory_used_bytes" && l.get("container") == "app"
            })
            .map(|x| x.1);
        assert_eq!(app_mem, Some(500.0 * 1_048_576.0));
        // 10 s later: the app used 2 s of CPU and Vigil 0.5 s: 0.25 vCPU of 0.5.
        let second = usage(
            &stats("2026-01-01T00:00:10.000000000Z", 3e9, 6e8),
            &t,
            &names,
            &mut prev,
        );
        let cpu = get(&second, "vigil_task_cpu_used_ratio").expect("a rate");
        assert!((cpu - 0.5).abs() < 1e-9, "{cpu}");
    }
}
