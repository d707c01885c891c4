variable "bucket" {
  description = "The lake bucket, imgpipe's alone: its lifecycle rules cover the whole bucket."
  type        = string
}

variable "name" {
  description = "Name prefix of the deployment (e.g. imgpipe-prod): the key alias, the access-log bucket."
  type        = string
}

variable "log_bucket" {
  description = "Bucket for S3 server access logs and ALB access logs. They name image keys and client addresses, so they expire with the images."
  type        = string
}

variable "log_retention_days" {
  description = "Days a log object lives in the log bucket, counting its noncurrent day, before lifecycle rounding: at most 5, since S3 rounds each of the two steps up to the next midnight UTC (5 + 2 = 7)."
  type        = number
  default     = 5

  validation {
    condition     = var.log_retention_days >= 2 && var.log_retention_days <= 5
    error_message = "Logs name images: 2 to 5 days (one of them the noncurrent-version day); lifecycle rounding adds up to 2."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets (dev only)."
  type        = bool
  default     = false
}

variable "web_origins" {
  description = "Origins of the web app (https://app.example.com) whose browsers PUT direct uploads straight to the lake: a CORS rule for PUT under uploads/ only. Empty: no CORS."
  type        = list(string)
  default     = []
}

variable "log_sources" {
  description = "Other buckets whose S3 server access logs go to the log bucket (each under s3/<bucket>/)."
  type        = list(string)
  default     = []
}

variable "policy_denies" {
  description = "Deny requests without TLS, and PUTs without SSE-KMS under the lake key. Off only in the offline apply: moto treats those conditions as always met and would deny every request."
  type        = bool
  default     = true
}
