output "athena_workgroup" {
  description = "Athena workgroup analysts query in."
  value       = aws_athena_workgroup.this.name
}

output "athena_results_bucket" {
  description = "Athena results bucket (expires within athena_results_days)."
  value       = aws_s3_bucket.results.id
}

output "redshift_workgroup" {
  description = "Redshift Serverless workgroup."
  value       = one(aws_redshiftserverless_workgroup.this[*].workgroup_name)
}

output "spectrum_role_arn" {
  description = "The IAM role Redshift Spectrum reads through (granted the analyst view)."
  value       = aws_iam_role.spectrum.arn
}

output "quicksight_data_set_id" {
  description = "QuickSight data set (direct query)."
  value       = one(aws_quicksight_data_set.images[*].data_set_id)
}
