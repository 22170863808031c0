# The passwords the configuration generates: the database's master password and the
# Redis auth token. Secrets Manager draws each (GetRandomPassword, an ephemeral value
# that never enters a plan), keeps it encrypted with the secrets key, and it is
# written once (secret_string_wo_version); the database, the cache and the URL
# parameters the task reads (ecs.tf) take it from there.
#
# Letters and digits only: both go into URLs (postgres://, rediss://), where they need
# no percent-encoding; RDS refuses / @ " and spaces anyway, and ElastiCache takes
# 16-128 printable characters except / @ and ".

locals {
  generated_secrets = {
    "database-password" = {
      length      = 40
      description = "Master password of the ${local.name} PostgreSQL database (watch_together)"
    }
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
  #checkov:skip=CKV2_AWS_57:Rotating these needs the database, the cache and the URL parameters the running tasks read to change together; until that is automated (infrastructure/README.md, "Secrets"), a rotation is a planned operator step.
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
