# The secrets the task reads that are not operator-set.
#
# The database's master password is RDS's own (manage_master_user_password in
# database.tf): RDS draws it, keeps it in a Secrets Manager secret encrypted with the
# secrets key, and rotates it on the schedule below, in the runbook's maintenance
# window. Each task reads the current password when it starts (DATABASE_PASSWORD,
# ecs.tf). A rotation changes the password under the running tasks: their open
# connections live on, new ones would be refused, so every rotation restarts the
# tasks (the state machine at the end of this file).
#
# The Redis auth token: Secrets Manager draws it (GetRandomPassword, an ephemeral
# value that never enters a plan), keeps it encrypted with the secrets key, and it is
# written once (secret_string_wo_version); the cache and the URL parameter the task
# reads (ecs.tf) take it from there. Letters and digits only: it goes into a
# rediss:// URL, where it needs no percent-encoding, and ElastiCache takes 16-128
# printable characters except / @ and ".

locals {
  generated_secrets = {
    "redis-auth-token" = {
      length      = 64
      description = "AUTH token of the ${local.name} Redis replication group"
    }
  }

  # The values, read back from Secrets Manager.
  generated = {
    for name, version in data.aws_secretsmanager_secret_version.generated : name => version.secret_string
  }
}

ephemeral "aws_secretsmanager_random_password" "generated" {
  for_each = local.generated_secrets

  password_length     = each.value.length
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "generated" {
  #checkov:skip=CKV2_AWS_57:Rotating the auth token needs the cache and the URL parameter the running tasks read to change together, and ElastiCache has no managed rotation; a rotation is a planned operator step (infrastructure/README.md, "Secrets"). The database password, which RDS rotates, is not one of these.
  for_each = local.generated_secrets

  name                    = "${local.ssm_prefix}/${each.key}"
  description             = each.value.description
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = local.is_dev ? 0 : 7
}

resource "aws_secretsmanager_secret_version" "generated" {
  for_each = local.generated_secrets

  secret_id                = aws_secretsmanager_secret.generated[each.key].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.generated[each.key].random_password
  secret_string_wo_version = 1
}

data "aws_secretsmanager_secret_version" "generated" {
  for_each = local.generated_secrets

  secret_id = aws_secretsmanager_secret.generated[each.key].id

  depends_on = [aws_secretsmanager_secret_version.generated]
}

# ---------------------------------------------------------------------------------
# The database password: RDS rotates it, and the tasks restart after each rotation
# ---------------------------------------------------------------------------------

# Once a month, in the runbook's maintenance window (the second Sunday, 02:00-04:00
# UTC). RDS's managed rotation needs no Lambda of ours.
resource "aws_secretsmanager_secret_rotation" "database_master" {
  secret_id = aws_db_instance.main.master_user_secret[0].secret_arn

  rotation_rules {
    schedule_expression = "cron(0 2 ? * SUN#2 *)"
    duration            = "2h"
  }
}

locals {
  # Secrets Manager's RotationSucceeded, through CloudTrail (audit.tf), for the
  # master secret only.
  rotation_succeeded_pattern = {
    source        = ["aws.secretsmanager"]
    "detail-type" = ["AWS Service Event via CloudTrail"]
    detail = {
      eventSource         = ["secretsmanager.amazonaws.com"]
      eventName           = ["RotationSucceeded"]
      additionalEventData = { SecretId = [aws_db_instance.main.master_user_secret[0].secret_arn] }
    }
  }

  # Rolling environments: a forced deployment of the revision that runs, which
  # starts the new tasks before the old ones stop (the service's minimum healthy
  # percent and circuit breaker apply as to any deployment).
  restart_rolling = {
    Comment = "Restart ${local.service} after the database password rotated: a forced deployment"
    # A stuck wait fails the execution (and its alarm) instead of holding it.
    TimeoutSeconds = 3600
    StartAt        = "ForceNewDeployment"
    States = {
      ForceNewDeployment = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::aws-sdk:ecs:updateService"
        Parameters = {
          Cluster            = aws_ecs_cluster.main.arn
          Service            = local.service
          ForceNewDeployment = true
        }
        Retry = [{ ErrorEquals = ["States.ALL"], IntervalSeconds = 30, MaxAttempts = 5, BackoffRate = 2 }]
        End   = true
      }
    }
  }

  # Blue-green (CODE_DEPLOY) refuses a forced deployment, and a CodeDeploy one would
  # wait for deploy.sh's gate. The same revision restarted needs neither: stop one
  # task at a time (ECS drains it from the load balancer first) and wait until the
  # service runs as many tasks as it wants before stopping the next.
  restart_one_at_a_time = {
    Comment = "Restart ${local.service} after the database password rotated: one task at a time"
    # A stuck wait fails the execution (and its alarm) instead of holding it.
    TimeoutSeconds = 3600
    StartAt        = "ListTasks"
    States = {
      ListTasks = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::aws-sdk:ecs:listTasks"
        Parameters = {
          Cluster       = aws_ecs_cluster.main.arn
          ServiceName   = local.service
          DesiredStatus = "RUNNING"
        }
        ResultSelector = { "arns.$" = "$.TaskArns" }
        Retry          = [{ ErrorEquals = ["States.ALL"], IntervalSeconds = 30, MaxAttempts = 5, BackoffRate = 2 }]
        Next           = "StopEachInTurn"
      }
      StopEachInTurn = {
        Type           = "Map"
        ItemsPath      = "$.arns"
        MaxConcurrency = 1
        Iterator = {
          StartAt = "StopTask"
          States = {
            StopTask = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::aws-sdk:ecs:stopTask"
              Parameters = {
                Cluster  = aws_ecs_cluster.main.arn
                "Task.$" = "$"
                Reason   = "The database password rotated: restarting to read the new one"
              }
              ResultPath = null
              Retry      = [{ ErrorEquals = ["States.ALL"], IntervalSeconds = 30, MaxAttempts = 5, BackoffRate = 2 }]
              Next       = "WaitForReplacement"
            }
            WaitForReplacement = {
              Type    = "Wait"
              Seconds = 60
              Next    = "DescribeService"
            }
            DescribeService = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::aws-sdk:ecs:describeServices"
              Parameters = {
                Cluster  = aws_ecs_cluster.main.arn
                Services = [local.service]
              }
              ResultSelector = {
                "running.$" = "$.Services[0].RunningCount"
                "desired.$" = "$.Services[0].DesiredCount"
              }
              Retry = [{ ErrorEquals = ["States.ALL"], IntervalSeconds = 30, MaxAttempts = 5, BackoffRate = 2 }]
              Next  = "Replaced"
            }
            Replaced = {
              Type    = "Choice"
              Choices = [{ Variable = "$.running", NumericGreaterThanEqualsPath = "$.desired", Next = "Done" }]
              Default = "WaitForReplacement"
            }
            Done = { Type = "Succeed" }
          }
        }
        End = true
      }
    }
  }

  # As JSON: the two are objects of different shapes.
  restart_tasks_definition = var.blue_green_deployments ? jsonencode(local.restart_one_at_a_time) : jsonencode(local.restart_rolling)
}

resource "aws_cloudwatch_log_group" "restart_tasks" {
  #checkov:skip=CKV_AWS_338:Retention is the runbook's per environment (var.log_retention_days); a year of restart logs is a cost nobody asked for.
  name              = "/aws/vendedlogs/states/${local.name}-restart-tasks"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_sfn_state_machine" "restart_tasks" {
  #checkov:skip=CKV_AWS_284:X-Ray would trace three ECS calls whose every step the execution log (logging_configuration, level ALL) already records.
  name       = "${local.name}-restart-tasks"
  role_arn   = aws_iam_role.restart_tasks.arn
  definition = local.restart_tasks_definition

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.restart_tasks.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }
}

resource "aws_cloudwatch_event_rule" "database_password_rotated" {
  name          = "${local.name}-database-password-rotated"
  description   = "RDS rotated the ${local.name} database master password: restart the tasks so they read the new one"
  event_pattern = jsonencode(local.rotation_succeeded_pattern)
}

resource "aws_cloudwatch_event_target" "restart_tasks" {
  rule     = aws_cloudwatch_event_rule.database_password_rotated.name
  arn      = aws_sfn_state_machine.restart_tasks.arn
  role_arn = aws_iam_role.rotation_events.arn
}

# A restart that failed leaves tasks on the old password; each refused connection
# then errs. Warned, with the execution's log to read (alerts/runbooks/DatabaseDown.md).
resource "aws_cloudwatch_metric_alarm" "restart_after_rotation_failed" {
  alarm_name        = "${var.environment}-restart-after-rotation-failed"
  alarm_description = "The restart of ${local.name}'s tasks after a database password rotation failed or timed out: tasks still on the old password cannot open new connections. Read the execution in Step Functions (${local.name}-restart-tasks), then restart the service by hand (alerts/runbooks/DatabaseDown.md)."

  namespace   = "AWS/States"
  metric_name = "ExecutionsFailed"
  dimensions = {
    StateMachineArn = aws_sfn_state_machine.restart_tasks.arn
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = [aws_sns_topic.warning.arn]
  ok_actions    = [aws_sns_topic.warning.arn]
}

# EventBridge starts the state machine; the state machine calls ECS on this service
# only, and writes its execution log.
data "aws_iam_policy_document" "rotation_events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rotation_events" {
  name               = "${local.name}-rotation-events"
  description        = "EventBridge: start ${local.name}-restart-tasks when the database password rotated"
  assume_role_policy = data.aws_iam_policy_document.rotation_events_assume.json
}

data "aws_iam_policy_document" "rotation_events" {
  statement {
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.restart_tasks.arn]
  }
}

resource "aws_iam_role_policy" "rotation_events" {
  name   = "start-restart-tasks"
  role   = aws_iam_role.rotation_events.id
  policy = data.aws_iam_policy_document.rotation_events.json
}

data "aws_iam_policy_document" "restart_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "restart_tasks" {
  name               = "${local.name}-restart-tasks"
  description        = "Step Functions: restart the ${local.name} tasks after a database password rotation"
  assume_role_policy = data.aws_iam_policy_document.restart_tasks_assume.json
}

data "aws_iam_policy_document" "restart_tasks" {
  #checkov:skip=CKV_AWS_111:The log delivery actions take no resource ARN (Step Functions' documented policy for logging); they are the only ones on "*".
  #checkov:skip=CKV_AWS_356:The log delivery actions take no resource ARN (Step Functions' documented policy for logging); they are the only ones on "*".
  statement {
    sid       = "TheServiceOnly"
    actions   = ["ecs:UpdateService", "ecs:DescribeServices"]
    resources = [aws_ecs_service.main.id]
  }

  statement {
    sid       = "ItsClustersTasks"
    actions   = ["ecs:ListTasks", "ecs:StopTask"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }

  statement {
    sid = "WriteTheExecutionLog"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "restart_tasks" {
  name   = "restart-the-service"
  role   = aws_iam_role.restart_tasks.id
  policy = data.aws_iam_policy_document.restart_tasks.json
}
