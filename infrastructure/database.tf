# PostgreSQL 16 on RDS and Redis on ElastiCache, both in the database subnets,
# encrypted at rest with the main KMS key and in transit (SSL forced, TLS required).
# Their connection URLs reach the containers through SSM SecureString parameters
# (ecs.tf). The database's master password is RDS's own: RDS keeps it in a Secrets
# Manager secret and rotates it (secrets.tf); the Redis auth token is drawn by Secrets
# Manager and kept there (secrets.tf).

# ---------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------

resource "aws_db_subnet_group" "main" {
  name        = local.name
  description = "Database subnets of ${local.name}"
  subnet_ids  = aws_subnet.database[*].id
}

resource "aws_db_parameter_group" "postgres" {
  name_prefix = "${local.name}-postgres16-"
  family      = "postgres16"
  description = "PostgreSQL 16 for ${local.name}: SSL forced, slow statements and DDL logged"

  # Every connection must use TLS; a plain-text one is refused.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # The SlowDatabaseQueries threshold (rules/warning.yaml): statements slower than
  # 500 ms land in the postgresql log export.
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  # Schema changes are logged; "all" would log every statement with its parameters.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# RDS creates its export log groups with no expiry; created here first, they get the
# environment's retention and the KMS key.
resource "aws_cloudwatch_log_group" "rds" {
  #checkov:skip=CKV_AWS_338:Retention is the runbook's per environment (var.log_retention_days); a year of database logs is a cost nobody asked for.
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_db_instance" "main" {
  identifier     = local.name
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.db_instance_class
  port           = 5432

  db_name  = "watch_together"
  username = "watch_together"
  # RDS draws the master password, keeps it in a secret of its own (encrypted with the
  # secrets key, read by the task at start as DATABASE_PASSWORD) and rotates it on the
  # schedule in secrets.tf. It never enters a plan or the state.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.secrets.arn

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.main.arn

  multi_az               = var.db_multi_az
  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.postgres.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true

  backup_retention_period  = var.db_backup_retention_days
  backup_window            = local.backup_window
  maintenance_window       = local.maintenance_window
  copy_tags_to_snapshot    = true
  delete_automated_backups = local.is_dev

  deletion_protection = var.db_deletion_protection
  # A final snapshot everywhere but dev, whose data is throw-away.
  skip_final_snapshot       = local.is_dev
  final_snapshot_identifier = local.is_dev ? null : "${local.name}-final"

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.main.arn
  performance_insights_retention_period = 7 # the free tier

  monitoring_interval = 60
  monitoring_role_arn = aws_iam_role.rds_monitoring.arn

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  # Production changes wait for the maintenance window; the others apply at once.
  apply_immediately = !local.is_production

  depends_on = [aws_cloudwatch_log_group.rds]
}

# The automated backups copied to a second region (db_backup_replication_region), with
# their own key there: the instance can be restored to any second of the retention in
# that region if this one is lost.
resource "aws_kms_key" "backup_replica" {
  #checkov:skip=CKV2_AWS_64:The default key policy (the account administers the key through IAM) is the one RDS needs here; RDS uses the key through the calling principal's grants.
  count    = var.db_backup_replication_region == null ? 0 : 1
  provider = aws.backup

  description             = "${local.name}: copies of the database's automated backups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_db_instance_automated_backups_replication" "main" {
  count    = var.db_backup_replication_region == null ? 0 : 1
  provider = aws.backup

  source_db_instance_arn = aws_db_instance.main.arn
  kms_key_id             = aws_kms_key.backup_replica[0].arn
  retention_period       = var.db_backup_retention_days
}

# ---------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------

resource "aws_elasticache_subnet_group" "main" {
  name        = local.name
  description = "Database subnets of ${local.name}"
  subnet_ids  = aws_subnet.database[*].id
}

resource "aws_cloudwatch_log_group" "redis_slow_log" {
  #checkov:skip=CKV_AWS_338:Retention is the runbook's per environment (var.log_retention_days); a year of Redis slow logs is a cost nobody asked for.
  name              = "/aws/elasticache/${local.name}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

locals {
  # A primary and one replica in another zone when Multi-AZ, else a single node.
  cache_node_count = var.cache_multi_az ? 2 : 1
  # ElastiCache names a replication group's nodes <id>-001, <id>-002, ... (the Redis
  # alarms in monitoring.tf watch each of them).
  cache_member_ids = [for i in range(local.cache_node_count) : format("%s-%03d", local.name, i + 1)]
}

resource "aws_elasticache_replication_group" "main" {
  replication_group_id = local.name
  description          = "Redis cache and Vigil's paging lease for ${local.name}"

  engine               = "redis"
  engine_version       = "7.1"
  parameter_group_name = "default.redis7"
  node_type            = var.cache_node_type
  port                 = 6379

  num_cache_clusters         = local.cache_node_count
  automatic_failover_enabled = var.cache_multi_az
  multi_az_enabled           = var.cache_multi_az

  subnet_group_name  = aws_elasticache_subnet_group.main.name
  security_group_ids = [aws_security_group.cache.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = local.generated["redis-auth-token"]

  snapshot_retention_limit   = local.is_production ? 7 : 1
  snapshot_window            = local.backup_window
  maintenance_window         = local.maintenance_window
  auto_minor_version_upgrade = true
  apply_immediately          = !local.is_production

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis_slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }
}
