# staging: the runbook's single task, db.t3.small and 3-day logs; otherwise shaped
# like production (final snapshot on destroy, on-demand Fargate).
# No secret belongs in this file (README.md, "Secrets").

environment = "staging"
aws_region  = "us-west-2"

# Network
vpc_cidr           = "10.20.0.0/16"
nat_gateway_per_az = false

# ECS: one task of 0.5 vCPU / 1 GiB.
# The deploy pipeline passes the images it built: -var app_image=... -var vigil_image=...
app_image          = "123456789012.dkr.ecr.us-west-2.amazonaws.com/watch-together:0.1.0"
vigil_image        = "123456789012.dkr.ecr.us-west-2.amazonaws.com/vigil:0.1.0"
ecs_task_cpu       = 512
ecs_task_memory    = 1024
ecs_min_tasks      = 1
ecs_max_tasks      = 1
log_retention_days = 3

# Deployments (scripts/deploy.sh, gated by Vigil): rolling; the two windows apply to blue-green only.
blue_green_deployments             = false
deployment_ready_wait_minutes      = 60
deployment_rollback_window_minutes = 60

# PostgreSQL
db_instance_class        = "db.t3.small"
db_max_connections       = 225
db_allocated_storage     = 20
db_max_allocated_storage = 100
db_multi_az              = false
# No copy of the backups in a second region.
db_backup_replication_region = null
db_backup_retention_days     = 7
db_deletion_protection       = false

# Redis
cache_node_type = "cache.t3.micro"
cache_multi_az  = false

# Load balancer and DNS
alb_deletion_protection       = false
alb_access_log_retention_days = 14
domain_name                   = "staging.plexwatchtogether.com"
route53_zone_id               = "Z1234567890ABC"
create_route53_record         = true

# Alerting (the PagerDuty URL is a secret: SSM, README.md)
warning_email = "devops+staging@plexwatchtogether.com"

# Audit log (CloudTrail)
cloudtrail_retention_days = 90
