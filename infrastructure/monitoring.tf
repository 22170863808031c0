# Alerting and dashboards: the KMS key and the two SNS topics Vigil pages through
# (critical -> PagerDuty, warning -> e-mail), the CloudWatch dashboards of
# dashboards/*.json, and the backstop CloudWatch alarms that page even when every
# Vigil is down. Their names are fixed: dashboards/alerts.json lists their ARNs.

# ---------------------------------------------------------------------------------
# KMS key of the topics
# ---------------------------------------------------------------------------------

resource "aws_kms_key" "sns" {
  description             = "${local.name}: SNS alert topics"
  enable_key_rotation     = true
  deletion_window_in_days = local.is_production ? 30 : 7
  policy                  = data.aws_iam_policy_document.kms_sns.json
}

resource "aws_kms_alias" "sns" {
  name          = "alias/${local.name}-sns"
  target_key_id = aws_kms_key.sns.key_id
}

data "aws_iam_policy_document" "kms_sns" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key alone; the account root statement is AWS's default that lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key alone; the other statements are limited to CloudWatch alarms and to the task role through SNS.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key alone.
  statement {
    sid       = "AccountAdministersKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch alarms publish to the encrypted topics (AWS's documented form; a
  # condition CloudWatch does not send would silently stop every alarm notification).
  statement {
    sid       = "CloudWatchAlarmsPublishToEncryptedTopics"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }

  # Vigil publishes with the task role. The grant is here, not in the task role's IAM
  # policy (which stays at exactly PutMetricData and Publish), and only through SNS.
  statement {
    sid       = "TaskRolePublishesThroughSns"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.ecs_task.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sns.${var.aws_region}.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------------
# Topics and subscriptions
# ---------------------------------------------------------------------------------

# Critical: Vigil's critical alerts and every backstop alarm. PagerDuty's Amazon
# CloudWatch integration opens an incident on ALARM and resolves it on OK.
resource "aws_sns_topic" "critical" {
  name              = "${var.environment}-critical"
  display_name      = "${var.environment} critical"
  kms_master_key_id = aws_kms_key.sns.arn
}

# Warning: Vigil's warnings, by e-mail.
resource "aws_sns_topic" "warning" {
  name              = "${var.environment}-warning"
  display_name      = "${var.environment} warning"
  kms_master_key_id = aws_kms_key.sns.arn
}

# The PagerDuty integration URL holds the integration key, so it is a secret: from
# TF_VAR_pagerduty_endpoint_url when given, else from SSM (set before the first
# apply, README.md).
data "aws_ssm_parameter" "pagerduty_endpoint_url" {
  count = nonsensitive(var.pagerduty_endpoint_url == null) ? 1 : 0

  name            = "${local.ssm_prefix}/pagerduty-endpoint-url"
  with_decryption = true
}

locals {
  pagerduty_endpoint_url = coalesce(var.pagerduty_endpoint_url, one(data.aws_ssm_parameter.pagerduty_endpoint_url[*].value))
}

resource "aws_sns_topic_subscription" "critical_pagerduty" {
  topic_arn              = aws_sns_topic.critical.arn
  protocol               = "https"
  endpoint               = local.pagerduty_endpoint_url
  endpoint_auto_confirms = true
  # PagerDuty reads the SNS envelope (Type, Message, ...), not the raw message.
  raw_message_delivery = false
}

# E-mail subscriptions stay "pending confirmation" until the link in the first
# message is followed (README.md).
resource "aws_sns_topic_subscription" "warning_email" {
  topic_arn = aws_sns_topic.warning.arn
  protocol  = "email"
  endpoint  = var.warning_email
}

# ---------------------------------------------------------------------------------
# Dashboards (dashboards/README.md): the same bodies `vigil dashboards push` uploads.
# Manage an environment's dashboards with Terraform or with vigil, not both.
# ---------------------------------------------------------------------------------

resource "aws_cloudwatch_dashboard" "watch_together" {
  for_each = toset(["application", "infrastructure", "alerts"])

  dashboard_name = "${var.environment}-watch-together-${each.key}"
  dashboard_body = templatefile("${path.module}/../dashboards/${each.key}.json", {
    environment = var.environment
    region      = var.aws_region
    account_id  = data.aws_caller_identity.current.account_id
  })
}

# ---------------------------------------------------------------------------------
# Backstop alarms. All page through the critical topic and resolve through it too
# (ok_actions), so PagerDuty closes the incident it opened.
# ---------------------------------------------------------------------------------

locals {
  alb_dimensions = {
    LoadBalancer = aws_lb.main.arn_suffix
  }

  # 20 % of the allocated storage, in bytes (storage autoscaling grows the volume at
  # 10 % free, so this fires first and measures against the smallest size).
  rds_free_storage_threshold_bytes = floor(0.2 * var.db_allocated_storage * 1024 * 1024 * 1024)
  # 80 % of the instance class's max_connections.
  rds_connections_threshold = floor(0.8 * var.db_max_connections)

  runbooks = "https://github.com/plex-watch-together/vigil/tree/main/alerts/runbooks"
}

# Every Vigil of the environment publishes vigil_heartbeat once a minute. Fewer than
# one sample a minute for three minutes, or no data at all, means no sidecar is
# alive (or none can reach CloudWatch): Vigil cannot page about its own death, this
# alarm does. It is in ALARM from the first apply until the first task publishes.
resource "aws_cloudwatch_metric_alarm" "vigil_heartbeat" {
  alarm_name        = "${var.environment}-vigil-heartbeat"
  alarm_description = "No Vigil sidecar of ${var.environment} has published vigil_heartbeat for 3 minutes: monitoring and paging are blind. Check the vigil container of the ECS tasks (logs: ${local.ecs_log_group_name}, stream prefix vigil)."

  namespace   = var.metrics_namespace
  metric_name = "vigil_heartbeat"
  dimensions = {
    Environment = var.environment
    Service     = local.service
  }
  statistic           = "SampleCount"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx_rate" {
  alarm_name        = "${var.environment}-alb-5xx-rate"
  alarm_description = "More than 5 % of the requests the load balancer forwarded in 5 minutes got a 5xx from the app (backstop of HighErrorRate; runbook ${local.runbooks}/HighErrorRate.md)."

  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "rate"
    expression  = "100 * FILL(errors, 0) / requests"
    label       = "Target 5xx (% of requests)"
    return_data = true
  }

  metric_query {
    id = "errors"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.alb_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.alb_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "alb_target_response_time" {
  alarm_name = "${var.environment}-alb-target-response-time"
  # A warning, as the runbook classes latency above 2 s: e-mail, not a page.
  alarm_description = "The app's p95 response time at the load balancer has been above 2 s for 5 minutes (backstop of HighLatency; runbook ${local.runbooks}/HighLatency.md)."

  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = local.alb_dimensions
  extended_statistic  = "p95"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 2
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.warning.arn]
  ok_actions    = [aws_sns_topic.warning.arn]
}

# Under blue-green either target group may hold production's tasks: the alarm takes
# the worse of them.
resource "aws_cloudwatch_metric_alarm" "alb_unhealthy_hosts" {
  alarm_name        = "${var.environment}-alb-unhealthy-hosts"
  alarm_description = "At least one app task has failed the load balancer's /api/health check for 3 minutes (runbook ${local.runbooks}/AppDown.md)."

  dynamic "metric_query" {
    for_each = aws_lb_target_group.app
    content {
      id = "unhealthy_${metric_query.key}"

      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = "UnHealthyHostCount"
        dimensions = {
          LoadBalancer = aws_lb.main.arn_suffix
          TargetGroup  = metric_query.value.arn_suffix
        }
        stat   = "Maximum"
        period = 60
      }
    }
  }

  metric_query {
    id          = "unhealthy"
    expression  = "MAX([${join(", ", [for key, _ in aws_lb_target_group.app : "unhealthy_${key}"])}])"
    label       = "Unhealthy app targets"
    return_data = true
  }

  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "rds_cpu" {
  alarm_name        = "${var.environment}-rds-cpu"
  alarm_description = "PostgreSQL's CPU has averaged above 80 % for 10 minutes (burstable classes run out of credits; see Performance Insights)."

  namespace   = "AWS/RDS"
  metric_name = "CPUUtilization"
  dimensions = {
    DBInstanceIdentifier = aws_db_instance.main.identifier
  }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "rds_free_storage" {
  alarm_name        = "${var.environment}-rds-free-storage"
  alarm_description = "PostgreSQL has less than 20 % of its ${var.db_allocated_storage} GiB allocated storage free."

  namespace   = "AWS/RDS"
  metric_name = "FreeStorageSpace"
  dimensions = {
    DBInstanceIdentifier = aws_db_instance.main.identifier
  }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  comparison_operator = "LessThanThreshold"
  threshold           = local.rds_free_storage_threshold_bytes
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "rds_connections" {
  alarm_name        = "${var.environment}-rds-connections"
  alarm_description = "PostgreSQL has had more than 80 % of its ${var.db_max_connections} connections in use for 5 minutes."

  namespace   = "AWS/RDS"
  metric_name = "DatabaseConnections"
  dimensions = {
    DBInstanceIdentifier = aws_db_instance.main.identifier
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.rds_connections_threshold
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

# ElastiCache reports per node; the alarm watches the fullest node (the primary can
# move on failover).
resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  alarm_name        = "${var.environment}-redis-memory"
  alarm_description = "A Redis node has used more than 80 % of its memory for 5 minutes; evictions come next."

  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "fullest"
    expression  = "MAX(METRICS())"
    label       = "DatabaseMemoryUsagePercentage (fullest node)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.cache_member_ids

    content {
      id = "node${metric_query.key + 1}"

      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "DatabaseMemoryUsagePercentage"
        dimensions = {
          CacheClusterId = metric_query.value
        }
        period = 60
        stat   = "Maximum"
      }
    }
  }

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}

resource "aws_cloudwatch_metric_alarm" "redis_evictions" {
  alarm_name        = "${var.environment}-redis-evictions"
  alarm_description = "Redis evicted keys in the last 5 minutes: the cache is full (runbook ${local.runbooks}/CacheHitRatioLow.md)."

  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "evictions"
    expression  = "SUM(METRICS())"
    label       = "Evictions (all nodes)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.cache_member_ids

    content {
      id = "node${metric_query.key + 1}"

      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "Evictions"
        dimensions = {
          CacheClusterId = metric_query.value
        }
        period = 300
        stat   = "Sum"
      }
    }
  }

  alarm_actions = [aws_sns_topic.critical.arn]
  ok_actions    = [aws_sns_topic.critical.arn]
}
