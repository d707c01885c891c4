# imgpipe audit, daily, as a scheduled RunTask. A failing run alarms twice
# over: the audit_failed log event (module observability's metric filter)
# and the task stopping with a non-zero exit code (its EventBridge rule).

resource "aws_scheduler_schedule" "audit" {
  count                        = var.enable_audit_schedule ? 1 : 0
  name                         = "${var.name}-audit"
  description                  = "imgpipe audit: nothing past expiry, lifecycle rules present, topic retention bounded"
  schedule_expression          = var.audit.schedule
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = var.ops_kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.this.arn
    role_arn = aws_iam_role.scheduler.arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.mode["audit"].arn_without_revision
      launch_type         = "FARGATE"
      task_count          = 1
      network_configuration {
        subnets          = var.private_subnet_ids
        security_groups  = [var.security_group_ids["tasks"]]
        assign_public_ip = false
      }
    }

    retry_policy {
      maximum_retry_attempts       = 3
      maximum_event_age_in_seconds = 3600
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name = "${var.name}-audit-scheduler"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

locals {
  scheduler_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "RunAudit"
        Effect    = "Allow"
        Action    = ["ecs:RunTask"]
        Resource  = ["${aws_ecs_task_definition.mode["audit"].arn_without_revision}:*"]
        Condition = { ArnEquals = { "ecs:cluster" = aws_ecs_cluster.this.arn } }
      },
      {
        Sid       = "PassAuditRoles"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = [aws_iam_role.task["audit"].arn, aws_iam_role.execution.arn]
        Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
      },
      {
        # The schedule (its target parameters) is encrypted with the ops key.
        Sid      = "DecryptSchedule"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.ops_kms_key_arn]
      },
    ]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "run-audit"
  role   = aws_iam_role.scheduler.id
  policy = jsonencode(local.scheduler_policy)
}
