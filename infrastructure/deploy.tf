# Blue-green deployments (production): CodeDeploy's ECS blue/green. scripts/deploy.sh
# registers the release's task definition and creates a deployment; CodeDeploy starts
# the replacement task set behind the green target group and the test listener, then
# waits, without production traffic, until the script has read Vigil's verdict on the
# new tasks for the bake time: it continues (traffic shifts at once) or stops the
# deployment (CodeDeploy rolls back). Nobody answering within
# deployment_ready_wait_minutes stops it too. The original task set is kept
# deployment_rollback_window_minutes after the shift, so that `scripts/deploy.sh
# production rollback` returns traffic to it in seconds. README.md, "Deploying".

resource "aws_codedeploy_app" "main" {
  count = var.blue_green_deployments ? 1 : 0

  name             = local.name
  compute_platform = "ECS"
}

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  count = var.blue_green_deployments ? 1 : 0

  name               = "${local.name}-codedeploy"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
}

# AWS's policy for ECS blue/green: task sets, the listeners and target groups, and
# passing the task roles to ECS.
resource "aws_iam_role_policy_attachment" "codedeploy" {
  count = var.blue_green_deployments ? 1 : 0

  role       = aws_iam_role.codedeploy[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSCodeDeployRoleForECS"
}

resource "aws_codedeploy_deployment_group" "main" {
  count = var.blue_green_deployments ? 1 : 0

  app_name               = aws_codedeploy_app.main[0].name
  deployment_group_name  = local.service
  deployment_config_name = "CodeDeployDefault.ECSAllAtOnce"
  service_role_arn       = aws_iam_role.codedeploy[0].arn

  # A deployment that fails (tasks that never turn healthy) or that the gate stops
  # returns traffic to the original task set by itself.
  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout    = "STOP_DEPLOYMENT"
      wait_time_in_minutes = var.deployment_ready_wait_minutes
    }

    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.deployment_rollback_window_minutes
    }
  }

  deployment_style {
    deployment_option = "WITH_TRAFFIC_CONTROL"
    deployment_type   = "BLUE_GREEN"
  }

  ecs_service {
    cluster_name = aws_ecs_cluster.main.name
    service_name = aws_ecs_service.main.name
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [aws_lb_listener.https.arn]
      }

      test_traffic_route {
        listener_arns = [aws_lb_listener.test[0].arn]
      }

      target_group {
        name = aws_lb_target_group.app["blue"].name
      }

      target_group {
        name = aws_lb_target_group.app["green"].name
      }
    }
  }

  depends_on = [aws_iam_role_policy_attachment.codedeploy]
}
