# dev: the smallest and cheapest environment. Throw-away data: no deletion
# protection, no final snapshot, Fargate Spot, one NAT gateway, 1-day logs.
# No secret belongs in this file (README.md, "Secrets").

environment = "dev"
aws_region  = "us-west-2"

# Network
vpc_cidr           = "10.10.0.0/16"
nat_gateway_per_az = false

# ECS: one task of 0.25 vCPU / 512 MiB (Vigil is limited to 256 MiB of it).
# The deploy pipeline passes the images it built: -var app_image=... -var vigil_image=...
app_image          = "123456789012.dkr.ecr.us-west-2.amazonaws.com/watch-together:0.1.0"
vigil_image        = "123456789012.dkr.ecr.us-west-2.amazonaws.com/vigil:0.1.0"
ecs_task_cpu       = 256
ecs_task_memory    = 512
ecs_min_tasks      = 1
ecs_max_tasks      = 1
log_retention_days = 1

# Deployments (scripts/deploy.sh, gated by Vigil): rolling; the two windows apply to blue-green only.
blue_green_deployments             = false
deployment_ready_wait_minutes      = 60
deployment_rollback_window_minutes = 60

# PostgreSQL
db_instance_class        = "db.t3.micro"
db_max_connections       = 112
db_allocated_storage     = 20
db_max_allocated_storage = 50
db_multi_az              = false
# No copy of the backups in a second region.
db_backup_replication_region = null
db_backup_retention_days     = 1
db_deletion_protection       = false

# Redis
cache_node_type = "cache.t3.micro"
cache_multi_az  = false

# Load balancer and DNS
alb_deletion_protection       = false
alb_access_log_retention_days = 7
domain_name                   = "dev.plexwatchtogether.com"
route53_zone_id               = "Z1234567890ABC"
create_route53_record         = true

# Alerting (the PagerDuty URL is a secret: SSM, README.md)
warning_email = "devops+dev@plexwatchtogether.com"

# Audit log (CloudTrail)
cloudtrail_retention_days = 90
