# Processors: CPU target tracking does the steady state and all scale-in;
# consumer lag on the events topic adds tasks in steps when images queue up
# faster than CPU shows (e.g. tasks blocked on a slow script).
# The API scales on CPU too; the bridge and sweeper have fixed counts.

locals {
  scaled = var.enable_autoscaling ? toset(["api", "processor"]) : toset([])
}

resource "aws_appautoscaling_target" "mode" {
  for_each           = local.scaled
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.mode[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.services[each.key].min
  max_capacity       = var.services[each.key].max
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each           = local.scaled
  name               = "${var.name}-${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.mode[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.mode[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.mode[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 60
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "processor_lag" {
  count              = var.kafka.msk_enabled && var.enable_autoscaling ? 1 : 0
  name               = "${var.name}-processor-lag"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.mode["processor"].service_namespace
  resource_id        = aws_appautoscaling_target.mode["processor"].resource_id
  scalable_dimension = aws_appautoscaling_target.mode["processor"].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 120
    metric_aggregation_type = "Maximum"
    # Bounds are relative to the alarm threshold.
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.processor_lag_scale_out * 4
      scaling_adjustment          = 1
    }
    step_adjustment {
      metric_interval_lower_bound = var.processor_lag_scale_out * 4
      scaling_adjustment          = 3
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "processor_lag" {
  count               = var.kafka.msk_enabled && var.enable_autoscaling ? 1 : 0
  alarm_name          = "${var.name}-processor-lag-scale-out"
  alarm_description   = "Scales processors out: events waiting for the imgpipe-processor group."
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = { "Cluster Name" = local.cluster_name, "Consumer Group" = var.kafka_groups.processor, Topic = var.kafka_topics.events }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = var.processor_lag_scale_out
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.processor_lag[0].arn]
}

locals {
  # arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>
  cluster_name = try(split("/", var.kafka.cluster_arn)[1], "")
}
