//! The metric families Vigil exposes, each name typed once: the stages that produce
//! a family use its constant, and `/metrics` renders from [`CATALOG`] (with
//! `docs/metrics.md` checked against it). A leaf module: it imports nothing of
//! Vigil's.

/// `vigil_build_info`.
pub(crate) const BUILD_INFO: &str = "vigil_build_info";
/// `vigil_start_time_seconds`.
pub(crate) const START_TIME_SECONDS: &str = "vigil_start_time_seconds";
/// `vigil_status`.
pub(crate) const STATUS: &str = "vigil_status";
/// `vigil_store_series`.
pub(crate) const STORE_SERIES: &str = "vigil_store_series";
/// `vigil_store_samples`.
pub(crate) const STORE_SAMPLES: &str = "vigil_store_samples";
/// `vigil_store_series_dropped_total`.
pub(crate) const STORE_SERIES_DROPPED_TOTAL: &str = "vigil_store_series_dropped_total";
/// `vigil_store_bytes`.
pub(crate) const STORE_BYTES: &str = "vigil_store_bytes";
/// `vigil_store_max_bytes`.
pub(crate) const STORE_MAX_BYTES: &str = "vigil_store_max_bytes";
/// `vigil_store_retention_seconds`.
pub(crate) const STORE_RETENTION_SECONDS: &str = "vigil_store_retention_seconds";
/// `vigil_store_samples_evicted_total`.
pub(crate) const STORE_SAMPLES_EVICTED_TOTAL: &str = "vigil_store_samples_evicted_total";
/// `vigil_rule_evaluations_total`.
pub(crate) const RULE_EVALUATIONS_TOTAL: &str = "vigil_rule_evaluations_total";
/// `vigil_rule_evaluation_duration_seconds`.
pub(crate) const RULE_EVALUATION_DURATION_SECONDS: &str = "vigil_rule_evaluation_duration_seconds";
/// `vigil_rule_evaluation_failures`.
pub(crate) const RULE_EVALUATION_FAILURES: &str = "vigil_rule_evaluation_failures";
/// `vigil_alerts`.
pub const ALERTS: &str = "vigil_alerts";
/// `vigil_probe_success`.
pub(crate) const PROBE_SUCCESS: &str = "vigil_probe_success";
/// `vigil_probe_duration_seconds`.
pub(crate) const PROBE_DURATION_SECONDS: &str = "vigil_probe_duration_seconds";
/// `vigil_probe_checks_total`.
pub(crate) const PROBE_CHECKS_TOTAL: &str = "vigil_probe_checks_total";
/// `vigil_probe_failures_total`.
pub(crate) const PROBE_FAILURES_TOTAL: &str = "vigil_probe_failures_total";
/// `vigil_probe_consecutive_failures`.
pub(crate) const PROBE_CONSECUTIVE_FAILURES: &str = "vigil_probe_consecutive_failures";
/// `vigil_http_status_code`.
pub(crate) const HTTP_STATUS_CODE: &str = "vigil_http_status_code";
/// `vigil_tls_cert_days_left`.
pub(crate) const TLS_CERT_DAYS_LEFT: &str = "vigil_tls_cert_days_left";
/// `vigil_postgres_connections`.
pub(crate) const POSTGRES_CONNECTIONS: &str = "vigil_postgres_connections";
/// `vigil_postgres_max_connections`.
pub(crate) const POSTGRES_MAX_CONNECTIONS: &str = "vigil_postgres_max_connections";
/// `vigil_postgres_connections_used_ratio`.
pub(crate) const POSTGRES_CONNECTIONS_USED_RATIO: &str = "vigil_postgres_connections_used_ratio";
/// `vigil_postgres_longest_query_seconds`.
pub(crate) const POSTGRES_LONGEST_QUERY_SECONDS: &str = "vigil_postgres_longest_query_seconds";
/// `vigil_redis_keyspace_hits_total`.
pub(crate) const REDIS_KEYSPACE_HITS_TOTAL: &str = "vigil_redis_keyspace_hits_total";
/// `vigil_redis_keyspace_misses_total`.
pub(crate) const REDIS_KEYSPACE_MISSES_TOTAL: &str = "vigil_redis_keyspace_misses_total";
/// `vigil_redis_used_memory_bytes`.
pub(crate) const REDIS_USED_MEMORY_BYTES: &str = "vigil_redis_used_memory_bytes";
/// `vigil_redis_maxmemory_bytes`.
pub(crate) const REDIS_MAXMEMORY_BYTES: &str = "vigil_redis_maxmemory_bytes";
/// `vigil_redis_memory_used_ratio`.
pub(crate) const REDIS_MEMORY_USED_RATIO: &str = "vigil_redis_memory_used_ratio";
/// `vigil_redis_evicted_keys_total`.
pub(crate) const REDIS_EVICTED_KEYS_TOTAL: &str = "vigil_redis_evicted_keys_total";
/// `vigil_redis_connected_clients`.
pub(crate) const REDIS_CONNECTED_CLIENTS: &str = "vigil_redis_connected_clients";
/// `vigil_disk_used_ratio`.
pub(crate) const DISK_USED_RATIO: &str = "vigil_disk_used_ratio";
/// `vigil_disk_free_bytes`.
pub(crate) const DISK_FREE_BYTES: &str = "vigil_disk_free_bytes";
/// `vigil_disk_size_bytes`.
pub(crate) const DISK_SIZE_BYTES: &str = "vigil_disk_size_bytes";
/// `vigil_heartbeat`.
pub const HEARTBEAT: &str = "vigil_heartbeat";
/// `vigil_outbox_depth`.
pub(crate) const OUTBOX_DEPTH: &str = "vigil_outbox_depth";
/// `vigil_storage_ok`.
pub(crate) const STORAGE_OK: &str = "vigil_storage_ok";
/// `vigil_outbox_dead_letters`.
pub(crate) const OUTBOX_DEAD_LETTERS: &str = "vigil_outbox_dead_letters";
/// `vigil_outbox_oldest_age_seconds`.
pub(crate) const OUTBOX_OLDEST_AGE_SECONDS: &str = "vigil_outbox_oldest_age_seconds";
/// `vigil_notification_attempts_total`.
pub(crate) const NOTIFICATION_ATTEMPTS_TOTAL: &str = "vigil_notification_attempts_total";
/// `vigil_notifications_delivered_total`.
pub(crate) const NOTIFICATIONS_DELIVERED_TOTAL: &str = "vigil_notifications_delivered_total";
/// `vigil_notification_failures_total`.
pub(crate) const NOTIFICATION_FAILURES_TOTAL: &str = "vigil_notification_failures_total";
/// `vigil_notifications_dropped_total`.
pub(crate) const NOTIFICATIONS_DROPPED_TOTAL: &str = "vigil_notifications_dropped_total";
/// `vigil_alerts_muted`.
pub(crate) const ALERTS_MUTED: &str = "vigil_alerts_muted";
/// `vigil_paging_lease_held`.
pub(crate) const PAGING_LEASE_HELD: &str = "vigil_paging_lease_held";
/// `vigil_publish_datums_total`.
pub(crate) const PUBLISH_DATUMS_TOTAL: &str = "vigil_publish_datums_total";
/// `vigil_publish_calls_total`.
pub(crate) const PUBLISH_CALLS_TOTAL: &str = "vigil_publish_calls_total";
/// `vigil_publish_errors_total`.
pub(crate) const PUBLISH_ERRORS_TOTAL: &str = "vigil_publish_errors_total";
/// `vigil_publish_dropped_total`.
pub(crate) const PUBLISH_DROPPED_TOTAL: &str = "vigil_publish_dropped_total";
/// `vigil_publish_skipped_values_total`.
pub(crate) const PUBLISH_SKIPPED_VALUES_TOTAL: &str = "vigil_publish_skipped_values_total";
/// `vigil_publish_queue_datums`.
pub(crate) const PUBLISH_QUEUE_DATUMS: &str = "vigil_publish_queue_datums";
/// `vigil_publish_last_success_timestamp_seconds`.
pub(crate) const PUBLISH_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "vigil_publish_last_success_timestamp_seconds";
/// `vigil_task_memory_used_bytes`.
pub(crate) const TASK_MEMORY_USED_BYTES: &str = "vigil_task_memory_used_bytes";
/// `vigil_task_memory_limit_bytes`.
pub(crate) const TASK_MEMORY_LIMIT_BYTES: &str = "vigil_task_memory_limit_bytes";
/// `vigil_task_memory_used_ratio`.
pub(crate) const TASK_MEMORY_USED_RATIO: &str = "vigil_task_memory_used_ratio";
/// `vigil_task_cpu_used_ratio`.
pub(crate) const TASK_CPU_USED_RATIO: &str = "vigil_task_cpu_used_ratio";
/// `vigil_container_memory_used_bytes`.
pub(crate) const CONTAINER_MEMORY_USED_BYTES: &str = "vigil_container_memory_used_bytes";
/// `vigil_container_cpu_used_ratio`.
pub(crate) const CONTAINER_CPU_USED_RATIO: &str = "vigil_container_cpu_used_ratio";

/// `vigil_journey_step_seconds`.
pub(crate) const JOURNEY_STEP_SECONDS: &str = "vigil_journey_step_seconds";
/// `vigil_journey_sync_seconds`.
pub(crate) const JOURNEY_SYNC_SECONDS: &str = "vigil_journey_sync_seconds";

/// A metric family Vigil exposes.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The family's name.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// Labels besides `probe` (documentation only).
    pub labels: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: &'static str,
    labels: &'static str,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// Every family Vigil exposes, in exposition order.
pub(crate) const CATALOG: &[MetricDef] = &[
    def(
        BUILD_INFO,
        "gauge",
        "version",
        "Always 1; the version label says which Vigil runs.",
    ),
    def(
        START_TIME_SECONDS,
        "gauge",
        "",
        "When the daemon started, in seconds since the Unix epoch.",
    ),
    def(
        STATUS,
        "gauge",
        "",
        "Overall verdict: 0 ok, 1 degraded, 2 down.",
    ),
    def(STORE_SERIES, "gauge", "", "Series in the in-memory store."),
    def(
        STORE_SAMPLES,
        "gauge",
        "",
        "Samples in the in-memory store.",
    ),
    def(
        STORE_SERIES_DROPPED_TOTAL,
        "counter",
        "",
        "New series refused because the store was full.",
    ),
    def(
        STORE_BYTES,
        "gauge",
        "",
        "Bytes the store holds: labels, index entries, sample buffers.",
    ),
    def(STORE_MAX_BYTES, "gauge", "", "The store's byte budget."),
    def(
        STORE_RETENTION_SECONDS,
        "gauge",
        "",
        "The retention in effect: the configured one, or less while the byte budget is tight.",
    ),
    def(
        STORE_SAMPLES_EVICTED_TOTAL,
        "counter",
        "",
        "Samples dropped before their retention to stay within the byte budget.",
    ),
    def(
        RULE_EVALUATIONS_TOTAL,
        "counter",
        "",
        "Rule evaluation rounds since the start.",
    ),
    def(
        RULE_EVALUATION_DURATION_SECONDS,
        "gauge",
        "",
        "How long the last rule evaluation round took.",
    ),
    def(
        RULE_EVALUATION_FAILURES,
        "gauge",
        "",
        "Rules whose last evaluation failed.",
    ),
    def(
        ALERTS,
        "gauge",
        "state",
        "Alerts by state (pending, firing).",
    ),
    def(
        PROBE_SUCCESS,
        "gauge",
        "probe, target",
        "1 when the probe's last check succeeded, else 0.",
    ),
    def(
        PROBE_DURATION_SECONDS,
        "gauge",
        "probe, target",
        "How long the probe's last check took.",
    ),
    def(
        PROBE_CHECKS_TOTAL,
        "counter",
        "probe",
        "Checks run since the daemon started.",
    ),
    def(
        PROBE_FAILURES_TOTAL,
        "counter",
        "probe",
        "Failed checks since the daemon started.",
    ),
    def(
        PROBE_CONSECUTIVE_FAILURES,
        "gauge",
        "probe",
        "Failed checks since the last success.",
    ),
    def(
        HTTP_STATUS_CODE,
        "gauge",
        "probe",
        "HTTP status code of the last answer.",
    ),
    def(
        TLS_CERT_DAYS_LEFT,
        "gauge",
        "probe",
        "Days until the server certificate expires.",
    ),
    def(
        POSTGRES_CONNECTIONS,
        "gauge",
        "probe",
        "Client connections open on the server.",
    ),
    def(
        POSTGRES_MAX_CONNECTIONS,
        "gauge",
        "probe",
        "The server's max_connections.",
    ),
    def(
        POSTGRES_CONNECTIONS_USED_RATIO,
        "gauge",
        "probe",
        "Client connections over max_connections.",
    ),
    def(
        POSTGRES_LONGEST_QUERY_SECONDS,
        "gauge",
        "probe",
        "Age of the longest running statement (0 when none).",
    ),
    def(
        REDIS_KEYSPACE_HITS_TOTAL,
        "counter",
        "probe",
        "Successful key lookups (INFO keyspace_hits).",
    ),
    def(
        REDIS_KEYSPACE_MISSES_TOTAL,
        "counter",
        "probe",
        "Failed key lookups (INFO keyspace_misses).",
    ),
    def(
        REDIS_USED_MEMORY_BYTES,
        "gauge",
        "probe",
        "Memory used by Redis (INFO used_memory).",
    ),
    def(
        REDIS_MAXMEMORY_BYTES,
        "gauge",
        "probe",
        "Redis's memory limit; 0 means none (INFO maxmemory).",
    ),
    def(
        REDIS_MEMORY_USED_RATIO,
        "gauge",
        "probe",
        "used_memory over maxmemory, when a limit is set.",
    ),
    def(
        REDIS_EVICTED_KEYS_TOTAL,
        "counter",
        "probe",
        "Keys evicted for the memory limit (INFO evicted_keys).",
    ),
    def(
        REDIS_CONNECTED_CLIENTS,
        "gauge",
        "probe",
        "Client connections (INFO connected_clients).",
    ),
    def(
        DISK_USED_RATIO,
        "gauge",
        "probe, mount",
        "Used share of the filesystem, counted like df.",
    ),
    def(
        DISK_FREE_BYTES,
        "gauge",
        "probe, mount",
        "Bytes available to unprivileged users.",
    ),
    def(
        DISK_SIZE_BYTES,
        "gauge",
        "probe, mount",
        "Size of the filesystem.",
    ),
    def(
        JOURNEY_STEP_SECONDS,
        "gauge",
        "probe, step",
        "How long each step of the last journey took: create, join, connect, sync, delete.",
    ),
    def(
        JOURNEY_SYNC_SECONDS,
        "gauge",
        "probe",
        "From a seek sent by one synthetic viewer to its arrival at the other.",
    ),
    def(
        HEARTBEAT,
        "gauge",
        "",
        "When the rules were last evaluated, in seconds since the Unix epoch; alert on time() - vigil_heartbeat.",
    ),
    def(
        OUTBOX_DEPTH,
        "gauge",
        "target",
        "Notifications waiting for delivery, per integration (receiver/kind).",
    ),
    def(
        STORAGE_OK,
        "gauge",
        "",
        "1 while notify.redb is written; 0 while paging runs from memory because the file cannot be written.",
    ),
    def(
        OUTBOX_DEAD_LETTERS,
        "gauge",
        "",
        "Outbox entries that could not be decoded, kept aside (dead_letters in notify.redb).",
    ),
    def(
        OUTBOX_OLDEST_AGE_SECONDS,
        "gauge",
        "target",
        "Age of the oldest waiting notification (0 when none).",
    ),
    def(
        NOTIFICATION_ATTEMPTS_TOTAL,
        "counter",
        "target",
        "Delivery attempts since the start.",
    ),
    def(
        NOTIFICATIONS_DELIVERED_TOTAL,
        "counter",
        "target",
        "Notifications the receiver accepted since the start.",
    ),
    def(
        NOTIFICATION_FAILURES_TOTAL,
        "counter",
        "target",
        "Failed delivery attempts since the start (retried unless dropped).",
    ),
    def(
        NOTIFICATIONS_DROPPED_TOTAL,
        "counter",
        "target",
        "Notifications the receiver refused for good (HTTP 400, invalid parameters).",
    ),
    def(
        ALERTS_MUTED,
        "gauge",
        "by",
        "Firing alerts held back, by what holds them: silence, window, inhibited, lease.",
    ),
    def(
        PAGING_LEASE_HELD,
        "gauge",
        "",
        "1 when this sidecar pages for shared alerts (it holds the lease, or Redis is unreachable and everyone pages).",
    ),
    def(
        PUBLISH_DATUMS_TOTAL,
        "counter",
        "",
        "Datums sent to CloudWatch (or written as EMF).",
    ),
    def(
        PUBLISH_CALLS_TOTAL,
        "counter",
        "",
        "PutMetricData calls (or EMF writes) that succeeded.",
    ),
    def(
        PUBLISH_ERRORS_TOTAL,
        "counter",
        "",
        "PutMetricData calls (or EMF writes) that failed.",
    ),
    def(
        PUBLISH_DROPPED_TOTAL,
        "counter",
        "",
        "Datums dropped: the queue was full while CloudWatch was unreachable, or CloudWatch refused a batch.",
    ),
    def(
        PUBLISH_SKIPPED_VALUES_TOTAL,
        "counter",
        "",
        "Values left out because CloudWatch cannot take them (NaN, +Inf, -Inf).",
    ),
    def(
        PUBLISH_QUEUE_DATUMS,
        "gauge",
        "",
        "Datums waiting to be sent.",
    ),
    def(
        PUBLISH_LAST_SUCCESS_TIMESTAMP_SECONDS,
        "gauge",
        "",
        "When a publish last succeeded (Unix time); absent before the first.",
    ),
    def(
        TASK_MEMORY_USED_BYTES,
        "gauge",
        "",
        "Memory the ECS task's containers use, page cache excluded.",
    ),
    def(
        TASK_MEMORY_LIMIT_BYTES,
        "gauge",
        "",
        "The ECS task's memory limit.",
    ),
    def(
        TASK_MEMORY_USED_RATIO,
        "gauge",
        "",
        "The ECS task's memory used over its limit.",
    ),
    def(
        TASK_CPU_USED_RATIO,
        "gauge",
        "",
        "The ECS task's CPU used over its vCPU limit, between the last two polls.",
    ),
    def(
        CONTAINER_MEMORY_USED_BYTES,
        "gauge",
        "container",
        "Memory one container of the task uses, page cache excluded.",
    ),
    def(
        CONTAINER_CPU_USED_RATIO,
        "gauge",
        "container",
        "CPU one container uses over the task's vCPU limit.",
    ),
];
