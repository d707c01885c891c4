output "ecr_repository_url" {
  description = "Push the imgpipe image here."
  value       = module.compute.ecr_repository_url
}

output "api_dns_name" {
  description = "The ALB's DNS name: point the API's domain at it."
  value       = module.compute.alb_dns_name
}

output "cluster_name" {
  description = "ECS cluster (for aws ecs run-task: reprocess, erase, verify)."
  value       = module.compute.cluster_name
}

output "task_definition_families" {
  description = "Task definition family per mode."
  value       = module.compute.task_definition_families
}

output "kafka_bootstrap_brokers" {
  description = "Bootstrap brokers (SASL/SCRAM over TLS, port 9096)."
  value       = module.kafka.bootstrap_brokers
}

output "kafka_sasl_secret_arn" {
  description = "Secret holding the SCRAM username and password."
  value       = module.kafka.sasl_secret_arn
}

output "lake_kms_key_arn" {
  description = "The lake key ([lake.s3] sse_kms_key_id)."
  value       = module.lake.kms_key_arn
}

output "athena_workgroup" {
  description = "Athena workgroup for analysts."
  value       = module.analytics.athena_workgroup
}

output "alarm_topic_arn" {
  description = "SNS topic of every alarm."
  value       = module.observability.alarm_topic_arn
}

output "task_role_arns" {
  description = "Task role per mode (api, bridge, processor, sweeper, audit)."
  value       = module.compute.task_role_arns
}

output "lake_bucket" {
  description = "The lake bucket."
  value       = module.lake.bucket
}
