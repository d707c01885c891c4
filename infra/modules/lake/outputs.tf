output "bucket" {
  description = "The lake bucket's name."
  value       = aws_s3_bucket.lake.id
}

output "bucket_arn" {
  description = "The lake bucket's ARN."
  value       = aws_s3_bucket.lake.arn
}

output "kms_key_arn" {
  description = "The lake's customer key (imgpipe's [lake.s3] sse_kms_key_id)."
  value       = aws_kms_key.lake.arn
}

output "log_bucket" {
  description = "The access-log bucket (S3 server access logs under s3/, ALB logs under alb/)."
  value       = aws_s3_bucket.logs.id
}

output "log_bucket_arn" {
  description = "The access-log bucket's ARN."
  value       = aws_s3_bucket.logs.arn
}
