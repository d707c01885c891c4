output "bootstrap_brokers" {
  description = "Bootstrap brokers for SASL/SCRAM over TLS (IMGPIPE_KAFKA_BROKERS)."
  value       = local.create ? aws_msk_cluster.this[0].bootstrap_brokers_sasl_scram : var.existing_brokers
}

output "msk_enabled" {
  description = "Whether this module made an MSK cluster (false with existing_brokers)."
  value       = local.create
}

output "cluster_arn" {
  description = "MSK cluster ARN (null with existing_brokers)."
  value       = local.create ? aws_msk_cluster.this[0].arn : null
}

output "cluster_name" {
  description = "MSK cluster name (null with existing_brokers)."
  value       = local.create ? aws_msk_cluster.this[0].cluster_name : null
}

output "sasl_secret_arn" {
  description = "Secret holding {username, password} for SASL/SCRAM."
  value       = local.create ? aws_secretsmanager_secret.scram[0].arn : var.existing_sasl_secret_arn
}

output "sasl_username" {
  description = "SASL/SCRAM username (IMGPIPE_KAFKA__SASL_USERNAME)."
  value       = local.create ? var.sasl_username : var.existing_sasl_username
}

output "server_properties" {
  description = "The broker configuration applied (for tests and the README)."
  value       = local.server_properties
}
