# The public Application Load Balancer: HTTPS with a DNS-validated ACM certificate,
# HTTP redirected to HTTPS, one target group (the app containers on 3000, sticky for
# WebSockets), access logs to S3, and an optional Route 53 alias.

# ---------------------------------------------------------------------------------
# Access log bucket
# ---------------------------------------------------------------------------------

# Elastic Load Balancing writes access logs only to buckets encrypted with SSE-S3.
resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_145:ALB access logs can only be delivered to buckets encrypted with SSE-S3 (AES256), not SSE-KMS.
  #checkov:skip=CKV_AWS_18:This is the log bucket; logging its own access would need yet another bucket, and CloudTrail data events cover reads if wanted.
  #checkov:skip=CKV_AWS_144:Access logs are operational data with a retention of days; cross-region replication would double the cost for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for new log objects.
  bucket_prefix = "${local.name}-alb-logs-"
  # Dev's logs may go with the environment; elsewhere a destroy stops at a full bucket.
  force_destroy = local.is_dev
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.alb_access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.alb_logs]
}

# The regional Elastic Load Balancing account (regions before August 2022) and the
# log delivery service (newer regions) may write under AWSLogs/<account>/; nobody may
# use plain HTTP.
data "aws_elb_service_account" "main" {}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    sid       = "ElbWritesAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.main.arn]
    }
  }

  statement {
    sid       = "LogDeliveryWritesAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid     = "DenyPlainHttp"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.alb_logs.arn,
      "${aws_s3_bucket.alb_logs.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  policy = data.aws_iam_policy_document.alb_logs.json

  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}

# ---------------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------------

resource "aws_lb" "main" {
  #checkov:skip=CKV2_AWS_76:Log4j is covered: the WAF runs AWSManagedRulesKnownBadInputsRuleSet (its Log4JRCE rules). The check also demands AWSManagedRulesAnonymousIpList, which would block viewers behind VPNs and hosting-provider IPs, common among Plex users.
  name               = local.name
  load_balancer_type = "application"
  # Internet-facing by design: it is the public entry point of the web app. Only the
  # load balancer sits in the public subnets; the tasks are private.
  internal        = false
  subnets         = aws_subnet.public[*].id
  security_groups = [aws_security_group.alb.id]

  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  # Long enough for idle WebSocket connections between Socket.IO-style pings.
  idle_timeout = 120

  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.alb_logs]
}

# Blue-green deployments (production, deploy.tf) alternate between two target groups;
# "blue" is the one the service was created with. Rolling deployments use it alone.
locals {
  target_groups = merge(
    { blue = "${local.name}-app" },
    var.blue_green_deployments ? { green = "${local.name}-green" } : {},
  )
}

moved {
  from = aws_lb_target_group.app
  to   = aws_lb_target_group.app["blue"]
}

resource "aws_lb_target_group" "app" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer (HTTPS listeners, TLS 1.3/1.2 policy); the targets are the tasks in private subnets, reached over HTTP on 3000 from the ALB's security group only. checkov only reports it since the target groups became a for_each.
  for_each = local.target_groups

  name                 = each.value
  target_type          = "ip"
  port                 = local.app_port
  protocol             = "HTTP"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 60

  # /api/health checks no dependency, so a database blip never drains every task.
  health_check {
    enabled             = true
    path                = "/api/health"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  # WebSocket sessions (watch-together rooms) stay on the task that holds them.
  stickiness {
    type            = "lb_cookie"
    cookie_duration = 86400
    enabled         = true
  }

  lifecycle {
    create_before_destroy = true
  }
}

# ---------------------------------------------------------------------------------
# Certificate (DNS-validated in the given Route 53 zone)
# ---------------------------------------------------------------------------------

resource "aws_acm_certificate" "main" {
  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "certificate_validation" {
  for_each = {
    for option in aws_acm_certificate.main.domain_validation_options : option.domain_name => {
      name   = option.resource_record_name
      record = option.resource_record_value
      type   = option.resource_record_type
    }
  }

  zone_id         = var.route53_zone_id
  name            = each.value.name
  type            = each.value.type
  records         = [each.value.record]
  ttl             = 60
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "main" {
  certificate_arn         = aws_acm_certificate.main.arn
  validation_record_fqdns = [for record in aws_route53_record.certificate_validation : record.fqdn]
}

# ---------------------------------------------------------------------------------
# Listeners
# ---------------------------------------------------------------------------------

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.main.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app["blue"].arn
  }

  # Blue-green deployments point it at the other target group after each shift
  # (scripts/deploy.sh, through CodeDeploy); Terraform must not point it back.
  lifecycle {
    ignore_changes = [default_action]
  }
}

# Blue-green's test listener: CodeDeploy routes it to the replacement task set before
# production traffic. Nothing may reach it from outside (no security group rule opens
# 8443): the gate is Vigil's verdict, read from CloudWatch, not test traffic.
resource "aws_lb_listener" "test" {
  count = var.blue_green_deployments ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 8443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.main.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app["green"].arn
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

# ---------------------------------------------------------------------------------
# DNS
# ---------------------------------------------------------------------------------

resource "aws_route53_record" "app" {
  count = var.create_route53_record ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.main.dns_name
    zone_id                = aws_lb.main.zone_id
    evaluate_target_health = true
  }
}
