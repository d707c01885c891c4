output "ecr_repository_url" {
  description = "Push the image here (docker push <url>:<image_tag>)."
  value       = aws_ecr_repository.imgpipe.repository_url
}

output "cluster_arn" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "cluster_name" {
  description = "The ECS cluster's name."
  value       = aws_ecs_cluster.this.name
}

output "alb_dns_name" {
  description = "Point the API's DNS name (CNAME/alias) here."
  value       = aws_lb.api.dns_name
}

output "alb_arn_suffix" {
  description = "ALB ARN suffix (CloudWatch dimension)."
  value       = aws_lb.api.arn_suffix
}

output "target_group_arn_suffix" {
  description = "API target group ARN suffix (CloudWatch dimension)."
  value       = aws_lb_target_group.api.arn_suffix
}

output "audit_task_family" {
  description = "Task definition family of the audit."
  value       = aws_ecs_task_definition.mode["audit"].family
}

output "task_definition_families" {
  description = "Task definition family per mode (for one-off runs: reprocess, erase, verify)."
  value       = { for k, t in aws_ecs_task_definition.mode : k => t.family }
}

output "task_policies" {
  description = "Each mode's task-role policy document (what the tests check)."
  value       = local.task_policies
}

output "execution_policy" {
  description = "The shared execution role's policy document."
  value       = local.execution_policy
}

output "scheduler_policy" {
  description = "The audit scheduler role's policy document."
  value       = local.scheduler_policy
}

output "container_definitions" {
  description = "Each mode's container definition (command, environment, secrets, health check)."
  value       = local.containers
}

output "config_toml" {
  description = "The config file rendered into the SSM parameter (key digests only, no secrets)."
  value       = local.config_toml
}

output "task_role_arns" {
  description = "Task role ARN per mode."
  value       = { for mode, role in aws_iam_role.task : mode => role.arn }
}
