# production: Multi-AZ everything, autoscaling 2-10 tasks, db.t3.medium, 30-day logs
# and backups, deletion protection, a NAT gateway per zone.
# No secret belongs in this file (README.md, "Secrets").

environment = "production"
aws_region  = "us-west-2"

# Network
vpc_cidr           = "10.30.0.0/16"
nat_gateway_per_az = true

# ECS: 2-10 tasks of 1 vCPU / 2 GiB.
# The deploy pipeline passes the images it built: -var app_image=... -var vigil_image=...
app_image          = "123456789012.dkr.ecr.us-west-2.amazonaws.com/watch-together:0.1.0"
vigil_image        = "123456789012.dkr.ecr.us-west-2.amazonaws.com/vigil:0.1.0"
ecs_task_cpu       = 1024
ecs_task_memory    = 2048
ecs_min_tasks      = 2
ecs_max_tasks      = 10
log_retention_days = 30

# Deployments (scripts/deploy.sh, gated by Vigil): blue-green through CodeDeploy; the replacement task set waits up to an hour for the gate, and the original is kept an hour for rollback.
blue_green_deployments             = true
deployment_ready_wait_minutes      = 60
deployment_rollback_window_minutes = 60

# PostgreSQL
db_instance_class        = "db.t3.medium"
db_max_connections       = 450
db_allocated_storage     = 50
db_max_allocated_storage = 500
db_multi_az              = true
db_backup_retention_days = 30
# A copy of the automated backups in a second region (the runbook's cross-region
# backups): point-in-time recovery survives the loss of us-west-2.
db_backup_replication_region = "us-east-1"
db_deletion_protection       = true

# Redis
cache_node_type = "cache.t3.small"
cache_multi_az  = true

# Load balancer and DNS
alb_deletion_protection       = true
alb_access_log_retention_days = 90
domain_name                   = "plexwatchtogether.com"
route53_zone_id               = "Z1234567890ABC"
create_route53_record         = true

# Alerting (the PagerDuty URL is a secret: SSM, README.md)
warning_email = "devops@plexwatchtogether.com"

# Audit log (CloudTrail)
cloudtrail_retention_days = 365
