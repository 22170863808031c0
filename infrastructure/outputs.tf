# What operators and the deploy pipeline need after an apply. No secret is output:
# connection URLs are read from SSM by the tasks, never from Terraform outputs.

output "environment" {
  description = "The environment this state belongs to."
  value       = var.environment
}

output "app_url" {
  description = "Public URL of the app (served through the load balancer)."
  value       = "https://${var.domain_name}"
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.main.id
}

output "public_subnet_ids" {
  description = "Public subnets (load balancer, NAT gateways)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (ECS tasks)."
  value       = aws_subnet.private[*].id
}

output "database_subnet_ids" {
  description = "Database subnets (RDS, ElastiCache; no route out of the VPC)."
  value       = aws_subnet.database[*].id
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (the target of domain_name's alias record)."
  value       = aws_lb.main.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for alias records made elsewhere."
  value       = aws_lb.main.zone_id
}

output "alb_access_logs_bucket" {
  description = "S3 bucket holding the load balancer's access logs."
  value       = aws_s3_bucket.alb_logs.id
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_name" {
  description = "ECS service name (aws ecs update-service --cluster <cluster> --service <this> --force-new-deployment picks up changed SSM values)."
  value       = aws_ecs_service.main.name
}

output "ecs_task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = aws_ecs_task_definition.main.arn
}

output "ecs_log_group_name" {
  description = "Log group of both containers (stream prefixes app/ and vigil/)."
  value       = aws_cloudwatch_log_group.ecs.name
}

output "ecs_task_role_arn" {
  description = "Role of the app and Vigil containers (PutMetricData to the namespace, Publish to the two topics)."
  value       = aws_iam_role.ecs_task.arn
}

output "rds_address" {
  description = "Host name of the PostgreSQL instance."
  value       = aws_db_instance.main.address
}

output "redis_primary_endpoint" {
  description = "Host name of the Redis primary (TLS on 6379)."
  value       = aws_elasticache_replication_group.main.primary_endpoint_address
}

output "sns_critical_topic_arn" {
  description = "SNS topic of critical alerts (PagerDuty)."
  value       = aws_sns_topic.critical.arn
}

output "sns_warning_topic_arn" {
  description = "SNS topic of warnings (e-mail)."
  value       = aws_sns_topic.warning.arn
}

output "ssm_parameter_names" {
  description = "SSM SecureString parameters the task reads; the two vigil/ ones are set by an operator (README.md)."
  value = {
    database_url        = aws_ssm_parameter.database_url.name
    redis_url           = aws_ssm_parameter.redis_url.name
    vigil_heartbeat_url = aws_ssm_parameter.vigil_heartbeat_url.name
    vigil_api_token     = aws_ssm_parameter.vigil_api_token.name
  }
}

output "ssm_kms_key_arn" {
  description = "KMS key the task's SSM parameters are encrypted with (pass it as --key-id when setting them)."
  value       = aws_kms_key.secrets.arn
}

output "dashboard_names" {
  description = "CloudWatch dashboards made from dashboards/*.json."
  value       = [for dashboard in aws_cloudwatch_dashboard.watch_together : dashboard.dashboard_name]
}

output "alarm_names" {
  description = "The backstop CloudWatch alarms (all page through the critical topic)."
  value = [
    aws_cloudwatch_metric_alarm.vigil_heartbeat.alarm_name,
    aws_cloudwatch_metric_alarm.alb_5xx_rate.alarm_name,
    aws_cloudwatch_metric_alarm.alb_target_response_time.alarm_name,
    aws_cloudwatch_metric_alarm.alb_unhealthy_hosts.alarm_name,
    aws_cloudwatch_metric_alarm.rds_cpu.alarm_name,
    aws_cloudwatch_metric_alarm.rds_free_storage.alarm_name,
    aws_cloudwatch_metric_alarm.rds_connections.alarm_name,
    aws_cloudwatch_metric_alarm.redis_memory.alarm_name,
    aws_cloudwatch_metric_alarm.redis_evictions.alarm_name,
  ]
}

output "waf_web_acl_arn" {
  description = "WAF web ACL in front of the load balancer."
  value       = aws_wafv2_web_acl.main.arn
}

output "codedeploy_application_name" {
  description = "CodeDeploy application of production's blue-green deployments (scripts/deploy.sh); null where deployments are rolling."
  value       = var.blue_green_deployments ? aws_codedeploy_app.main[0].name : null
}

output "codedeploy_deployment_group_name" {
  description = "Its deployment group; null where deployments are rolling."
  value       = var.blue_green_deployments ? aws_codedeploy_deployment_group.main[0].deployment_group_name : null
}
