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
  description = "The access-log bucket (S3 server access logs under s3/<bucket>/, ALB logs under alb/), once its policy lets the log services in."
  # The name as given, known at plan time: the ALB's access_logs cannot take
  # a value known only after apply (the provider fails the first apply with
  # "inconsistent final plan"). depends_on keeps the ordering the resource
  # reference gave: S3 and the ALB check the policy when logging is set.
  value      = var.log_bucket
  depends_on = [aws_s3_bucket.logs, aws_s3_bucket_policy.logs]
}

output "log_bucket_arn" {
  description = "The access-log bucket's ARN."
  value       = aws_s3_bucket.logs.arn
}
