# Inputs. Everything that differs between environments has no default and is set in
# environments/<env>.tfvars (infrastructure/tests/test_structure.py checks that every
# tfvars file sets every such variable and nothing undeclared). The two defaults left
# are the same everywhere. No secret is ever set in a tfvars file: README.md says where
# each secret lives.

# ---------------------------------------------------------------------------------
# Environment and network
# ---------------------------------------------------------------------------------

variable "environment" {
  type        = string
  description = "Deployment environment: dev, staging or production. Prefixes every name, is the Environment dimension of Vigil's metrics and the prefix of the alarm and dashboard names."

  validation {
    condition     = contains(["dev", "staging", "production"], var.environment)
    error_message = "environment must be dev, staging or production."
  }
}

variable "aws_region" {
  type        = string
  description = "AWS region of the whole environment, e.g. us-west-2."

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-west-2."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "The VPC's IPv4 range, a /16 (split into /24 public, private and database subnets in three zones). Give each environment its own so they can be peered later."

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && endswith(var.vpc_cidr, "/16")
    error_message = "vpc_cidr must be a valid /16, e.g. 10.20.0.0/16."
  }
}

variable "nat_gateway_per_az" {
  type        = bool
  description = "true: one NAT gateway in each of the three zones, so a zone outage leaves the other zones' tasks their way out (production). false: one shared NAT gateway (cheaper; its zone failing cuts every task off AWS's APIs)."
}

# ---------------------------------------------------------------------------------
# ECS
# ---------------------------------------------------------------------------------

variable "app_image" {
  type        = string
  description = "ECR image URI of the watch-together server with an immutable tag or digest, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/watch-together:1.4.2 (Dockerfile target `app`)."

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", var.app_image)) && !endswith(var.app_image, ":latest")
    error_message = "app_image must be an ECR image URI with a tag (not latest) or a sha256 digest."
  }
}

variable "vigil_image" {
  type        = string
  description = "ECR image URI of the Vigil sidecar with an immutable tag or digest, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/vigil:0.1.0 (Dockerfile target `vigil`)."

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", var.vigil_image)) && !endswith(var.vigil_image, ":latest")
    error_message = "vigil_image must be an ECR image URI with a tag (not latest) or a sha256 digest."
  }
}

variable "ecs_task_cpu" {
  type        = number
  description = "Fargate task CPU units (256 = 0.25 vCPU), shared by the app and Vigil (Vigil's share under contention is 128)."

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.ecs_task_cpu)
    error_message = "ecs_task_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "ecs_task_memory" {
  type        = number
  description = "Fargate task memory in MiB (a size Fargate allows with ecs_task_cpu); Vigil is limited to 256 MiB of it, the app may use the rest."

  validation {
    condition     = var.ecs_task_memory >= 512 && var.ecs_task_memory <= 30720 && var.ecs_task_memory % 512 == 0
    error_message = "ecs_task_memory must be a multiple of 512 MiB between 512 and 30720."
  }
}

variable "ecs_min_tasks" {
  type        = number
  description = "Fewest running tasks (the service's desired count at creation and the autoscaling floor)."

  validation {
    condition     = var.ecs_min_tasks >= 1
    error_message = "ecs_min_tasks must be at least 1."
  }
}

variable "ecs_max_tasks" {
  type        = number
  description = "Most running tasks autoscaling may reach (CPU and memory target tracking)."

  validation {
    condition     = var.ecs_max_tasks >= var.ecs_min_tasks
    error_message = "ecs_max_tasks must be at least ecs_min_tasks."
  }
}

variable "blue_green_deployments" {
  type        = bool
  description = "Deploy through CodeDeploy's ECS blue/green (deploy.tf: a second target group, a test listener, the CODE_DEPLOY controller) instead of ECS's rolling update. Changing it replaces the ECS service."
}

variable "deployment_ready_wait_minutes" {
  type        = number
  description = "Blue-green: how long CodeDeploy holds a ready replacement task set without production traffic for scripts/deploy.sh's gate to continue it; past that it stops the deployment and rolls back. More than the gate's startup grace plus its bake time (15 minutes with the defaults)."

  validation {
    condition     = var.deployment_ready_wait_minutes >= 20 && var.deployment_ready_wait_minutes <= 2880
    error_message = "deployment_ready_wait_minutes must be between 20 (the gate's defaults, with room) and 2880 (CodeDeploy's limit)."
  }
}

variable "deployment_rollback_window_minutes" {
  type        = number
  description = "Blue-green: how long the original task set is kept after traffic shifts, during which `scripts/deploy.sh production rollback` returns traffic to it at once."

  validation {
    condition     = var.deployment_rollback_window_minutes >= 0 && var.deployment_rollback_window_minutes <= 2880
    error_message = "deployment_rollback_window_minutes must be between 0 and 2880 (CodeDeploy's limit)."
  }
}

variable "cloudtrail_retention_days" {
  type        = number
  description = "Days the CloudTrail bucket keeps the audit log files (and their digests)."

  validation {
    condition     = var.cloudtrail_retention_days >= 90
    error_message = "cloudtrail_retention_days must be at least 90 (CloudTrail's own event history already covers 90 days)."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch Logs keeps the containers' logs, the VPC flow logs, the WAF logs and the database and cache logs."

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

# ---------------------------------------------------------------------------------
# PostgreSQL (RDS)
# ---------------------------------------------------------------------------------

variable "db_instance_class" {
  type        = string
  description = "RDS instance class, e.g. db.t3.medium."

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t3.small."
  }
}

variable "db_max_connections" {
  type        = number
  description = "PostgreSQL's max_connections for db_instance_class (RDS's default, LEAST(DBInstanceClassMemory/9531392, 5000): 112 for db.t3.micro, 225 for db.t3.small, 450 for db.t3.medium). The rds-connections alarm fires above 80 % of it."

  validation {
    condition     = var.db_max_connections >= 10
    error_message = "db_max_connections must be at least 10."
  }
}

variable "db_allocated_storage" {
  type        = number
  description = "Initial gp3 storage in GiB. The rds-free-storage alarm fires below 20 % of it free."

  validation {
    condition     = var.db_allocated_storage >= 20
    error_message = "db_allocated_storage must be at least 20 GiB (gp3's minimum)."
  }
}

variable "db_max_allocated_storage" {
  type        = number
  description = "Ceiling in GiB for RDS storage autoscaling (grows the volume when it runs low)."

  validation {
    condition     = var.db_max_allocated_storage >= var.db_allocated_storage
    error_message = "db_max_allocated_storage must be at least db_allocated_storage."
  }
}

variable "db_multi_az" {
  type        = bool
  description = "Run a synchronous standby in a second zone with automatic failover."
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of automated backups and point-in-time recovery (1-35)."

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35 (0 would turn backups off)."
  }
}

variable "db_backup_replication_region" {
  type        = string
  description = "A second region that keeps a copy of the automated backups (point-in-time recovery there too, for a region outage), or null for none."

  validation {
    condition     = var.db_backup_replication_region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.db_backup_replication_region))
    error_message = "db_backup_replication_region must be a region name such as us-east-1, or null."
  }
}

variable "db_deletion_protection" {
  type        = bool
  description = "Refuse to delete the database instance (turn off by hand, on purpose, before a destroy)."
}

# ---------------------------------------------------------------------------------
# Redis (ElastiCache)
# ---------------------------------------------------------------------------------

variable "cache_node_type" {
  type        = string
  description = "ElastiCache node type, e.g. cache.t3.micro."

  validation {
    condition     = startswith(var.cache_node_type, "cache.")
    error_message = "cache_node_type must be an ElastiCache node type such as cache.t3.micro."
  }
}

variable "cache_multi_az" {
  type        = bool
  description = "true: a primary and a replica in two zones with automatic failover; false: a single node."
}

# ---------------------------------------------------------------------------------
# Load balancer and DNS
# ---------------------------------------------------------------------------------

variable "alb_deletion_protection" {
  type        = bool
  description = "Refuse to delete the load balancer."
}

variable "alb_access_log_retention_days" {
  type        = number
  description = "Days the ALB access logs are kept in their S3 bucket before they expire."

  validation {
    condition     = var.alb_access_log_retention_days >= 1
    error_message = "alb_access_log_retention_days must be at least 1."
  }
}

variable "domain_name" {
  type        = string
  description = "The host name users reach, e.g. plexwatchtogether.com; the ACM certificate is issued for it, DNS-validated in route53_zone_id."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name."
  }
}

variable "route53_zone_id" {
  type        = string
  description = "ID of the public Route 53 hosted zone holding domain_name: the certificate's validation records go there, and the alias record when create_route53_record is true."

  validation {
    condition     = can(regex("^Z[A-Z0-9]{4,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a hosted zone ID such as Z1234567890ABC."
  }
}

variable "create_route53_record" {
  type        = bool
  description = "Create the A alias record domain_name -> the load balancer (false while DNS still points elsewhere, e.g. during a migration)."
}

# ---------------------------------------------------------------------------------
# Alerting
# ---------------------------------------------------------------------------------

variable "warning_email" {
  type        = string
  description = "Address the warnings topic e-mails (the subscription must be confirmed from the mailbox once)."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.warning_email))
    error_message = "warning_email must be an e-mail address."
  }
}

variable "pagerduty_endpoint_url" {
  type        = string
  description = "The PagerDuty Amazon CloudWatch integration URL (https://events.pagerduty.com/integration/<key>/enqueue) the critical topic posts to. A secret: never in a tfvars file. Leave it null to read the SSM SecureString <ssm_prefix>/pagerduty-endpoint-url (README.md), or pass it as TF_VAR_pagerduty_endpoint_url from a secret store."
  sensitive   = true
  nullable    = true
  default     = null

  validation {
    condition     = var.pagerduty_endpoint_url == null || startswith(coalesce(var.pagerduty_endpoint_url, "https://"), "https://")
    error_message = "pagerduty_endpoint_url must be an https:// URL."
  }
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace Vigil publishes to (publish.cloudwatch.namespace in vigil.example.yaml); the task role may put metrics only there."
  default     = "PlexWatchTogether"
}
