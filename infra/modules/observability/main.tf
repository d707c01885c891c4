# Logs, metrics from logs, alarms. Every log group keeps 7 days at most and
# is encrypted with the ops key: logs can name images.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  # One log group per imgpipe mode, plus the AWS services that log for us.
  services = ["api", "bridge", "processor", "sweeper", "audit"]
  platform = {
    msk      = "/imgpipe/${var.name}/msk-brokers"
    vpc_flow = "/imgpipe/${var.name}/vpc-flow"
    # WAF only logs to groups named aws-waf-logs-*.
    waf = "aws-waf-logs-${var.name}"
    # Container Insights would make this group itself, keeping task events
    # forever; made here first, it keeps them 7 days like everything else.
    containerinsights = "/aws/ecs/containerinsights/${var.name}/performance"
  }
}

# --- the ops key ----------------------------------------------------------------
# Logs, the alarm topic, the Kafka SCRAM secret and the config parameter.
# Kept apart from the lake key so that the execution role (which reads
# secrets) can decrypt nothing of the lake, and the task roles nothing here.
resource "aws_kms_key" "ops" {
  description             = "${var.name}: logs, alarms, secrets, config"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Key policies name the key as "*"; this delegates to IAM.
        Sid       = "AccountAdministersThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # CloudWatch Logs encrypts with the key itself, and only for this
        # account's log groups.
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*" }
        }
      },
      {
        # Alarms and EventBridge publish to the encrypted topic.
        Sid       = "AlarmPublishers"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })
}

resource "aws_kms_alias" "ops" {
  name          = "alias/${var.name}-ops"
  target_key_id = aws_kms_key.ops.key_id
}

# --- log groups -----------------------------------------------------------------
resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_338:Logs name images; keeping them a year would break the 7-day promise. 7 days is the point.
  for_each          = toset(local.services)
  name              = "/imgpipe/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

resource "aws_cloudwatch_log_group" "platform" {
  #checkov:skip=CKV_AWS_338:Broker, flow and WAF logs carry client addresses and request paths (image ids); 7 days at most, like the images.
  for_each          = local.platform
  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

# --- alarm topic ------------------------------------------------------------------
resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.ops.arn
}

resource "aws_sns_topic_policy" "alarms" {
  arn = aws_sns_topic.alarms.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AlarmPublishers"
      Effect    = "Allow"
      Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
      Action    = "sns:Publish"
      Resource  = aws_sns_topic.alarms.arn
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# --- metrics from the app's JSON logs ---------------------------------------------
# tracing-subscriber's JSON puts the event name at $.fields.event. These
# names are a contract with the app (see infra/README.md, "Alarms").
locals {
  log_events = {
    dead_letter  = { group = "bridge", metric = "DeadLetters" }
    sweep_failed = { group = "sweeper", metric = "SweepFailures" }
    audit_failed = { group = "audit", metric = "AuditFailures" }
    quarantined  = { group = "processor", metric = "Quarantined" }
  }
}

resource "aws_cloudwatch_log_metric_filter" "event" {
  for_each       = local.log_events
  name           = "${var.name}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.service[each.value.group].name
  pattern        = "{ $.fields.event = \"${each.key}\" }"
  metric_transformation {
    name          = each.value.metric
    namespace     = "imgpipe/${var.name}"
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "The bridge sent Kafka messages to the dead-letter topic (images.dlq): look at imgpipe-reason."
  namespace           = "imgpipe/${var.name}"
  metric_name         = aws_cloudwatch_log_metric_filter.event["dead_letter"].metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "sweep_failures" {
  alarm_name          = "${var.name}-sweep-failures"
  alarm_description   = "Sweep passes fail (every minute): expired data may outlive the promise until the S3 lifecycle backstop runs."
  namespace           = "imgpipe/${var.name}"
  metric_name         = aws_cloudwatch_log_metric_filter.event["sweep_failed"].metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "audit_failures" {
  alarm_name          = "${var.name}-audit-failures"
  alarm_description   = "imgpipe audit found violations (data past expiry, missing lifecycle rules, topic retention too long) or could not run."
  namespace           = "imgpipe/${var.name}"
  metric_name         = aws_cloudwatch_log_metric_filter.event["audit_failed"].metric_transformation[0].name
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# The audit task exiting non-zero (violations, a crash, an OOM kill) alarms
# even if it never got to log audit_failed.
resource "aws_cloudwatch_event_rule" "audit_task_failed" {
  name        = "${var.name}-audit-task-failed"
  description = "imgpipe audit stopped with a non-zero exit code"
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [var.ecs_cluster_arn]
      group      = ["family:${var.audit_task_family}"]
      lastStatus = ["STOPPED"]
      containers = { exitCode = [{ "anything-but" = 0 }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "audit_task_failed" {
  rule = aws_cloudwatch_event_rule.audit_task_failed.name
  arn  = aws_sns_topic.alarms.arn
}

resource "aws_cloudwatch_metric_alarm" "consumer_lag" {
  for_each            = var.msk_cluster_name == null ? {} : var.kafka_topics
  alarm_name          = "${var.name}-lag-${each.key}"
  alarm_description   = "Consumer group ${each.key} is behind on ${each.value}: messages wait (and age toward the 7-day limit)."
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = { "Cluster Name" = var.msk_cluster_name, "Consumer Group" = each.key, Topic = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.consumer_lag_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "More than ${var.alb_5xx_percent}% of API requests answered 5xx by the tasks."
  evaluation_periods  = 2
  threshold           = var.alb_5xx_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "100 * errors / MAX([errors, requests])"
    label       = "5xx percent"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "no_healthy_hosts" {
  alarm_name          = "${var.name}-api-no-healthy-hosts"
  alarm_description   = "No API task passes /healthz: uploads fail."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
