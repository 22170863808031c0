# The Watch Together server and its Vigil sidecar on ECS Fargate: provider, shared
# locals and the network (VPC over three availability zones with public, private and
# database subnets, internet and NAT gateways, route tables, VPC flow logs).
#
# One configuration, three environments: every environment-specific value comes from
# environments/<env>.tfvars and every environment keeps its own state (README.md).

terraform {
  # 1.10 for the S3 backend's native lock file (use_lockfile) and ephemeral
  # resources, 1.11 for write-only arguments (secrets that never enter the state).
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.83 for write-only arguments and the Secrets Manager ephemeral resources.
      version = "~> 5.83"
    }
  }

  # Partial configuration: bucket, key (one per environment), region and
  # use_lockfile are given to `terraform init -backend-config=...` (README.md), so one
  # environment's plan can never be computed against another's state.
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = "plex-watch-together"
      Service     = local.service
      Environment = var.environment
      ManagedBy   = "terraform"
      Repository  = "github.com/plex-watch-together/vigil"
    }
  }
}

# The second region that holds the copy of the database's automated backups
# (database.tf); the main region where there is none, so the provider is always valid.
provider "aws" {
  alias  = "backup"
  region = coalesce(var.db_backup_replication_region, var.aws_region)

  default_tags {
    tags = {
      Project     = "plex-watch-together"
      Service     = local.service
      Environment = var.environment
      ManagedBy   = "terraform"
      Repository  = "github.com/plex-watch-together/vigil"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# Exactly the region's zones a, b and c: the set never grows when AWS adds a zone,
# and a region without them fails the plan instead of spreading over other zones.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for letter in ["a", "b", "c"] : "${var.aws_region}${letter}"]
  }

  lifecycle {
    postcondition {
      condition     = length(self.names) == 3
      error_message = "The network spans three availability zones: ${var.aws_region} must have zones a, b and c available."
    }
  }
}

locals {
  # Names AWS limits to 32 characters (ALB, target group) stay short:
  # "watch-together-production" is 25.
  name    = "watch-together-${var.environment}"
  service = "watch-together"

  is_production = var.environment == "production"
  is_dev        = var.environment == "dev"

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  azs = data.aws_availability_zones.available.names

  # A /16 split into /24s: public 0-2, private 10-12, database 20-22.
  public_subnet_cidrs   = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, i)]
  private_subnet_cidrs  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 10 + i)]
  database_subnet_cidrs = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 20 + i)]

  # One NAT gateway per zone where a zone outage must not cut the other zones'
  # tasks off AWS's APIs (production); one shared gateway elsewhere, to save cost.
  nat_gateway_count = var.nat_gateway_per_az ? length(local.azs) : 1

  # Where the task's secrets live in SSM Parameter Store (ecs.tf).
  ssm_prefix = "/plex-watch-together/${var.environment}"

  # The awslogs log group of both containers.
  ecs_log_group_name = "/aws/ecs/plex-watch-together/${var.environment}"

  # The runbook's maintenance window (second Sunday of the month, 02:00-04:00 UTC,
  # muted for warnings in alerts/routing.yaml): AWS windows are weekly, so RDS and
  # ElastiCache get every Sunday 02:00-04:00 UTC, and their backups run before it.
  maintenance_window = "sun:02:00-sun:04:00"
  backup_window      = "00:30-01:30"
}

# ---------------------------------------------------------------------------------
# VPC
# ---------------------------------------------------------------------------------

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = local.name
  }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = {
    Name = local.name
  }
}

# Public subnets: the load balancer and the NAT gateways. Nothing gets a public IP
# by default; the ALB and the NAT gateways bring their own addresses.
resource "aws_subnet" "public" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.main.id
  cidr_block              = local.public_subnet_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false

  tags = {
    Name = "${local.name}-public-${local.azs[count.index]}"
    Tier = "public"
  }
}

# Private subnets: the ECS tasks. Out to AWS's APIs (ECR, SSM, CloudWatch, SNS)
# through the NAT gateway; nothing reaches in except the ALB.
resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.main.id
  cidr_block        = local.private_subnet_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = {
    Name = "${local.name}-private-${local.azs[count.index]}"
    Tier = "private"
  }
}

# Database subnets: RDS and ElastiCache. No route out of the VPC at all.
resource "aws_subnet" "database" {
  count = length(local.azs)

  vpc_id            = aws_vpc.main.id
  cidr_block        = local.database_subnet_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = {
    Name = "${local.name}-database-${local.azs[count.index]}"
    Tier = "database"
  }
}

resource "aws_eip" "nat" {
  count = local.nat_gateway_count

  domain = "vpc"

  tags = {
    Name = "${local.name}-nat-${local.azs[count.index]}"
  }

  depends_on = [aws_internet_gateway.main]
}

resource "aws_nat_gateway" "main" {
  count = local.nat_gateway_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags = {
    Name = "${local.name}-${local.azs[count.index]}"
  }

  depends_on = [aws_internet_gateway.main]
}

# ---------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  tags = {
    Name = "${local.name}-public"
  }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count = length(local.azs)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# One route table per zone, each to its own zone's NAT gateway when there is one per
# zone, else all to the single gateway.
resource "aws_route_table" "private" {
  count = length(local.azs)

  vpc_id = aws_vpc.main.id

  tags = {
    Name = "${local.name}-private-${local.azs[count.index]}"
  }
}

resource "aws_route" "private_nat" {
  count = length(local.azs)

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.main[min(count.index, local.nat_gateway_count - 1)].id
}

resource "aws_route_table_association" "private" {
  count = length(local.azs)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# The database subnets only know the VPC's own range (the implicit local route).
resource "aws_route_table" "database" {
  vpc_id = aws_vpc.main.id

  tags = {
    Name = "${local.name}-database"
  }
}

resource "aws_route_table_association" "database" {
  count = length(local.azs)

  subnet_id      = aws_subnet.database[count.index].id
  route_table_id = aws_route_table.database.id
}

# ---------------------------------------------------------------------------------
# VPC flow logs (to CloudWatch Logs, encrypted, retention as the other logs)
# ---------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_338:Retention is the runbook's per environment (var.log_retention_days: 30 days in production, 1-3 elsewhere); a year of flow logs is a cost nobody asked for.
  name              = "/aws/vpc/flow-logs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_flow_log" "main" {
  vpc_id                   = aws_vpc.main.id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 60

  tags = {
    Name = local.name
  }
}

# ---------------------------------------------------------------------------------
# Network ACL of the database subnets (the runbook's second layer under the security
# groups): PostgreSQL and Redis from the private subnets, the answers back to them,
# and the database tier's own traffic (the Redis replica, RDS Multi-AZ). Nothing
# else, in or out; the public subnets cannot reach them even if a security group
# were opened by mistake.
# ---------------------------------------------------------------------------------

locals {
  database_acl_ingress = concat(
    flatten([
      for i, cidr in local.private_subnet_cidrs : [
        { cidr = cidr, from = 5432, to = 5432, what = "PostgreSQL from the tasks" },
        { cidr = cidr, from = 6379, to = 6379, what = "Redis from the tasks" },
      ]
    ]),
    [for cidr in local.database_subnet_cidrs : { cidr = cidr, from = 0, to = 65535, what = "the database tier" }],
  )
  database_acl_egress = concat(
    [for cidr in local.private_subnet_cidrs : { cidr = cidr, from = 1024, to = 65535, what = "answers to the tasks" }],
    [for cidr in local.database_subnet_cidrs : { cidr = cidr, from = 0, to = 65535, what = "the database tier" }],
  )
}

resource "aws_network_acl" "database" {
  vpc_id     = aws_vpc.main.id
  subnet_ids = aws_subnet.database[*].id

  tags = {
    Name = "${local.name}-database"
  }
}

resource "aws_network_acl_rule" "database_ingress" {
  count = length(local.database_acl_ingress)

  network_acl_id = aws_network_acl.database.id
  egress         = false
  rule_number    = 100 + count.index * 10
  rule_action    = "allow"
  protocol       = "tcp"
  cidr_block     = local.database_acl_ingress[count.index].cidr
  from_port      = local.database_acl_ingress[count.index].from
  to_port        = local.database_acl_ingress[count.index].to
}

resource "aws_network_acl_rule" "database_egress" {
  count = length(local.database_acl_egress)

  network_acl_id = aws_network_acl.database.id
  egress         = true
  rule_number    = 100 + count.index * 10
  rule_action    = "allow"
  protocol       = "tcp"
  cidr_block     = local.database_acl_egress[count.index].cidr
  from_port      = local.database_acl_egress[count.index].from
  to_port        = local.database_acl_egress[count.index].to
}
