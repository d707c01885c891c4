output "kms_key_arn" {
  description = "The ops key: logs, alarm topic, Kafka secret, config parameter."
  value       = aws_kms_key.ops.arn
}

output "service_log_groups" {
  description = "Log group name per imgpipe mode (api, bridge, processor, sweeper, audit)."
  value       = { for k, g in aws_cloudwatch_log_group.service : k => g.name }
}

output "service_log_group_arns" {
  description = "Log group ARN per imgpipe mode."
  value       = { for k, g in aws_cloudwatch_log_group.service : k => g.arn }
}

output "msk_log_group" {
  description = "Log group for MSK broker logs."
  value       = aws_cloudwatch_log_group.platform["msk"].name
}

output "flow_log_group_arn" {
  description = "Log group ARN for VPC flow logs."
  value       = aws_cloudwatch_log_group.platform["vpc_flow"].arn
}

output "waf_log_group_arn" {
  description = "Log group ARN for WAF logs."
  value       = aws_cloudwatch_log_group.platform["waf"].arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm publishes to."
  value       = aws_sns_topic.alarms.arn
}
