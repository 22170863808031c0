# The ECS cluster and the Fargate service: one task = the watch-together server
# (`app`) and its Vigil sidecar (`vigil`), behind the ALB's target group on port 3000.
# Also the task's secrets in SSM Parameter Store, its log group and its autoscaling.
#
# The container definitions live in `locals` as HCL objects (jsonencode'd into the
# task definition) so that infrastructure/tests/test_structure.py can check them.

# ---------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "ecs" {
  #checkov:skip=CKV_AWS_338:Retention is the runbook's per environment (var.log_retention_days: 30 days in production, 3 in staging, 1 in dev); a year is a cost nobody asked for.
  name              = local.ecs_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# ---------------------------------------------------------------------------------
# Secrets (SSM SecureString, encrypted with the secrets key; read only by the ECS
# execution role, which injects them into the containers' environment)
# ---------------------------------------------------------------------------------

# Values Terraform knows: the connection URLs built from the endpoints, and the Redis
# auth token. The database URL has no password: RDS rotates it, so each task reads the
# current one at start from RDS's secret (DATABASE_PASSWORD below).
resource "aws_ssm_parameter" "database_url" {
  name        = "${local.ssm_prefix}/database-url"
  description = "DATABASE_URL of the app and Vigil: PostgreSQL over TLS (rds.force_ssl); the password is DATABASE_PASSWORD"
  type        = "SecureString"
  key_id      = aws_kms_key.secrets.arn
  value = format(
    "postgres://%s@%s:%d/%s?sslmode=require",
    aws_db_instance.main.username,
    aws_db_instance.main.address,
    aws_db_instance.main.port,
    aws_db_instance.main.db_name,
  )
}

resource "aws_ssm_parameter" "redis_url" {
  name        = "${local.ssm_prefix}/redis-url"
  description = "REDIS_URL of the app and Vigil, and Vigil's VIGIL_LEASE_REDIS_URL: rediss:// (TLS) with the auth token"
  type        = "SecureString"
  key_id      = aws_kms_key.secrets.arn
  value = format(
    "rediss://:%s@%s:%d/0",
    urlencode(local.generated["redis-auth-token"]),
    aws_elasticache_replication_group.main.primary_endpoint_address,
    aws_elasticache_replication_group.main.port,
  )
}

# Values an operator sets (README.md, "Secrets"): created here with a placeholder and
# never overwritten by Terraform afterwards.
resource "aws_ssm_parameter" "vigil_heartbeat_url" {
  name        = "${local.ssm_prefix}/vigil/heartbeat-url"
  description = "VIGIL_HEARTBEAT_URL: the dead man's switch the Watchdog pings every minute (alerts/routing.yaml). Set by an operator."
  type        = "SecureString"
  key_id      = aws_kms_key.secrets.arn
  # A valid URL that can never resolve (.invalid, RFC 2606), so Vigil's config loads
  # and the heartbeat fails visibly (logged, retried) until an operator sets it.
  value = "https://heartbeat.invalid/not-configured"

  lifecycle {
    ignore_changes = [value]
  }
}

# The placeholder is random rather than a well-known string, so the silence API is
# never open with a guessable token before an operator sets a real one. Secrets
# Manager draws it (an ephemeral value: in neither the plan nor the state) and it is
# written once (value_wo_version), so an operator's token is never overwritten.
ephemeral "aws_secretsmanager_random_password" "vigil_api_token_placeholder" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "vigil_api_token" {
  name             = "${local.ssm_prefix}/vigil/api-token"
  description      = "VIGIL_API_TOKEN: bearer token of Vigil's silence API. Set by an operator."
  type             = "SecureString"
  key_id           = aws_kms_key.secrets.arn
  value_wo         = ephemeral.aws_secretsmanager_random_password.vigil_api_token_placeholder.random_password
  value_wo_version = 1
}

# ---------------------------------------------------------------------------------
# The task's containers
# ---------------------------------------------------------------------------------

locals {
  app_port   = 3000
  vigil_port = 9464

  # Vigil needs about 21 MiB and under half a percent of a core (bench/README.md,
  # bench/footprint.sh). Its memory is a hard limit, so a leak in the sidecar can never
  # starve the app (the restart policy brings it back); its CPU units are its share
  # when the two containers compete, not a cap.
  vigil_cpu    = 128
  vigil_memory = 256

  # Every parameter the task reads; the execution role may read exactly these.
  task_ssm_parameter_arns = [
    aws_ssm_parameter.database_url.arn,
    aws_ssm_parameter.redis_url.arn,
    aws_ssm_parameter.vigil_heartbeat_url.arn,
    aws_ssm_parameter.vigil_api_token.arn,
  ]

  # The database password: the current `password` key of RDS's master secret, which
  # the execution role may read (iam.tf). ECS reads it when a task starts.
  database_password_secret = {
    name      = "DATABASE_PASSWORD"
    valueFrom = "${aws_db_instance.main.master_user_secret[0].secret_arn}:password::"
  }

  container_definitions = [
    {
      name      = "app"
      image     = var.app_image
      essential = true
      user      = "65532:65532"

      readonlyRootFilesystem = true

      portMappings = [
        {
          name          = "http"
          containerPort = local.app_port
          hostPort      = local.app_port
          protocol      = "tcp"
        },
      ]

      environment = [
        { name = "LOG_FORMAT", value = "json" },
        { name = "PORT", value = tostring(local.app_port) },
      ]

      secrets = [
        { name = "DATABASE_URL", valueFrom = aws_ssm_parameter.database_url.arn },
        local.database_password_secret,
        { name = "REDIS_URL", valueFrom = aws_ssm_parameter.redis_url.arn },
      ]

      # GETs http://127.0.0.1:$PORT/api/health; exit 0 on 200, else 1. The start
      # period covers the migrations the app runs at start.
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/watch-together", "healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 60
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "app"
          # A CloudWatch Logs hiccup must not block the app's writes to stdout.
          mode            = "non-blocking"
          max-buffer-size = "25m"
        }
      }
    },
    {
      name  = "vigil"
      image = var.vigil_image
      # essential = false, on purpose: a Vigil crash must not take a serving task
      # down. ECS replaces the task only when the app (essential) dies. Vigil's own
      # death is caught by the vigil_heartbeat alarm (monitoring.tf; missing data is
      # breaching, so silence pages), and the restart policy below restarts it in
      # place, keeping its state volume.
      essential = false
      user      = "65532:65532"
      cpu       = local.vigil_cpu
      memory    = local.vigil_memory

      readonlyRootFilesystem = true

      # Restarted in place after a crash (not after a clean exit), at most once a
      # minute; /var/lib/vigil (alert state, outbox, silences) survives it.
      restartPolicy = {
        enabled              = true
        ignoredExitCodes     = [0]
        restartAttemptPeriod = 60
      }

      dependsOn = [
        { containerName = "app", condition = "START" },
      ]

      # The API (/status, /healthz, /metrics, silences): inside the task only. The
      # ALB forwards nothing here and the tasks' security group admits only 3000.
      portMappings = [
        {
          name          = "vigil"
          containerPort = local.vigil_port
          hostPort      = local.vigil_port
          protocol      = "tcp"
        },
      ]

      # The only writable path: Fargate task storage, for the alert state, the
      # notification outbox and silences.
      mountPoints = [
        { sourceVolume = "vigil-state", containerPath = "/var/lib/vigil", readOnly = false },
      ]

      # The image carries vigil.example.yaml as /etc/vigil/vigil.yaml with rules/ and
      # alerts/ beside it; these fill its ${VAR} placeholders.
      environment = [
        { name = "APP_URL", value = "http://127.0.0.1:${local.app_port}" },
        { name = "AWS_REGION", value = var.aws_region },
        # The journey probe goes the way viewers do: through the load balancer.
        { name = "JOURNEY_URL", value = "https://${var.domain_name}" },
        { name = "LOG_FORMAT", value = "json" },
        { name = "VIGIL_CONFIG", value = "/etc/vigil/vigil.yaml" },
        { name = "VIGIL_ENVIRONMENT", value = var.environment },
        { name = "VIGIL_LISTEN", value = "0.0.0.0:${local.vigil_port}" },
        { name = "VIGIL_PUBLISH_MODE", value = "api" },
        { name = "VIGIL_SNS_CRITICAL_TOPIC_ARN", value = aws_sns_topic.critical.arn },
        { name = "VIGIL_SNS_WARNING_TOPIC_ARN", value = aws_sns_topic.warning.arn },
        { name = "VIGIL_STATE_DIR", value = "/var/lib/vigil" },
      ]

      secrets = [
        { name = "DATABASE_URL", valueFrom = aws_ssm_parameter.database_url.arn },
        local.database_password_secret,
        { name = "REDIS_URL", valueFrom = aws_ssm_parameter.redis_url.arn },
        { name = "VIGIL_API_TOKEN", valueFrom = aws_ssm_parameter.vigil_api_token.arn },
        { name = "VIGIL_HEARTBEAT_URL", valueFrom = aws_ssm_parameter.vigil_heartbeat_url.arn },
        # The paging lease lives in the same cache.
        { name = "VIGIL_LEASE_REDIS_URL", valueFrom = aws_ssm_parameter.redis_url.arn },
      ]

      # GETs http://127.0.0.1:9464/healthz; exit 0 on 200, else 1.
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/vigil", "healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "vigil"
          mode                  = "non-blocking"
          max-buffer-size       = "25m"
        }
      }
    },
  ]
}

# ---------------------------------------------------------------------------------
# Cluster, task definition, service
# ---------------------------------------------------------------------------------

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# Dev runs on Fargate Spot (the runbook: spot for development); an interruption there
# costs a minute of a throw-away environment.
resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = local.is_dev ? "FARGATE_SPOT" : "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "main" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.ecs_task_cpu
  memory                   = var.ecs_task_memory
  execution_role_arn       = aws_iam_role.ecs_execution.arn
  task_role_arn            = aws_iam_role.ecs_task.arn

  container_definitions = jsonencode(local.container_definitions)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Fargate task storage, mounted at /var/lib/vigil in the vigil container. It
  # outlives container restarts and dies with the task. The image declares the path
  # a VOLUME owned by uid 65532, so Fargate seeds the mount with that ownership.
  volume {
    name = "vigil-state"
  }
}

resource "aws_ecs_service" "main" {
  name             = local.service
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.main.arn
  desired_count    = var.ecs_min_tasks
  platform_version = "LATEST"

  capacity_provider_strategy {
    capacity_provider = local.is_dev ? "FARGATE_SPOT" : "FARGATE"
    weight            = 1
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.app["blue"].arn
    container_name   = "app"
    container_port   = local.app_port
  }

  # Rolling deployments that never drop below the running count; a deployment whose
  # tasks keep failing their health checks is stopped and rolled back. Blue-green
  # (production) deploys through CodeDeploy instead (deploy.tf), which takes no
  # circuit breaker: a failed gate or health check rolls back there.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60

  dynamic "deployment_circuit_breaker" {
    for_each = var.blue_green_deployments ? [] : [true]
    content {
      enable   = true
      rollback = true
    }
  }

  deployment_controller {
    type = var.blue_green_deployments ? "CODE_DEPLOY" : "ECS"
  }

  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  enable_execute_command  = false

  # Autoscaling owns the running count after creation, and scripts/deploy.sh what
  # runs: it registers each release's task definition from the family's latest
  # revision (this resource's) and rolls it out behind Vigil's gate; under
  # CodeDeploy the target group changes with every deployment too.
  lifecycle {
    ignore_changes = [desired_count, task_definition, load_balancer]
  }

  depends_on = [
    aws_lb_listener.https,
    aws_iam_role_policy.ecs_execution_secrets,
    aws_ecs_cluster_capacity_providers.main,
  ]
}

# ---------------------------------------------------------------------------------
# Autoscaling: target tracking on CPU and on memory, between the two bounds
# ---------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "ecs" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.main.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.ecs_min_tasks
  max_capacity       = var.ecs_max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ecs.service_namespace
  resource_id        = aws_appautoscaling_target.ecs.resource_id
  scalable_dimension = aws_appautoscaling_target.ecs.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 60
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "memory" {
  name               = "${local.name}-memory"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ecs.service_namespace
  resource_id        = aws_appautoscaling_target.ecs.resource_id
  scalable_dimension = aws_appautoscaling_target.ecs.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 75
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageMemoryUtilization"
    }
  }
}
