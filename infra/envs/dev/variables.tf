# Every env (dev, prod) is this same root module; only terraform.tfvars
# differs. .ci/infra-check fails when the other files drift apart.

variable "env" {
  description = "Environment name (dev, prod)."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource (e.g. imgpipe-prod)."
  type        = string
}

variable "lake_bucket" {
  description = "The lake bucket (imgpipe's alone)."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake in the bucket (empty, or ending in /)."
  type        = string
  default     = ""

  validation {
    condition     = var.lake_prefix == "" || endswith(var.lake_prefix, "/")
    error_message = "lake_prefix is empty or ends in /."
  }
}

variable "log_bucket" {
  description = "Access-log bucket (S3 and ALB logs, 7-day expiry)."
  type        = string
}

variable "athena_results_bucket" {
  description = "Athena results bucket (1-day expiry)."
  type        = string
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets and the ECR repository (dev only)."
  type        = bool
  default     = false
}

variable "az_count" {
  description = "Availability zones (3 for Redshift Serverless)."
  type        = number
  default     = 3
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ."
  type        = bool
  default     = false
}

variable "image_tag" {
  description = "imgpipe image tag in ECR (immutable: a git SHA or version)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the API's HTTPS listener."
  type        = string
}

variable "alb_internal" {
  description = "Internal ALB instead of internet-facing."
  type        = bool
  default     = false
}

variable "alb_deletion_protection" {
  description = "Protect the ALB from deletion."
  type        = bool
  default     = true
}

variable "api_keys" {
  description = "API keys: SHA-256 of each key (imgpipe keys hash), its policy principal and permissions."
  type = list(object({
    sha256      = string
    principal   = string
    permissions = list(string)
  }))
}

variable "script_sandbox" {
  description = "bwrap (processors on EC2, sandboxed scripts) or none (Fargate, unconfined scripts)."
  type        = string
  default     = "bwrap"
}

variable "services" {
  description = "Size and count of each long-running mode."
  type = map(object({
    cpu     = number
    memory  = number
    desired = number
    min     = number
    max     = number
  }))
}

variable "processor_instance_types" {
  description = "EC2 types for processors (script_sandbox = bwrap)."
  type        = list(string)
  default     = ["c7g.large", "c6g.large", "m7g.large"]
}

variable "claim_check_allow" {
  description = "Buckets (or bucket/prefix) Kafka claim-checks may point into."
  type        = list(string)
  default     = []
}

variable "existing_brokers" {
  description = "Bring your own Kafka (host:port,…); empty makes an MSK cluster."
  type        = string
  default     = ""
}

variable "existing_sasl_secret_arn" {
  description = "With existing_brokers: Secrets Manager secret {username, password}."
  type        = string
  default     = ""
}

variable "existing_sasl_username" {
  description = "With existing_brokers: SASL/SCRAM username."
  type        = string
  default     = ""
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.t3.small"
}

variable "msk_broker_volume_gb" {
  description = "EBS per MSK broker."
  type        = number
  default     = 100
}

variable "glue_database" {
  description = "Glue database of the images table."
  type        = string
  default     = "imgpipe"
}

variable "lakeformation_admin_arns" {
  description = "Lake Formation admins; must include the role Terraform runs as."
  type        = list(string)
}

variable "principal_arns" {
  description = "IAM ARN per principal of policies/default.toml (analyst, privacy-officer, kafka-analyst)."
  type        = map(string)
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group owning the data source and data set."
  type        = string
}

variable "redshift_max_rpu" {
  description = "Redshift Serverless RPU ceiling (cost cap)."
  type        = number
  default     = 32
}

variable "alarm_email" {
  description = "E-mail subscribed to alarms (empty: none)."
  type        = string
  default     = ""
}

variable "consumer_lag_threshold" {
  description = "Consumer lag (messages) that alarms."
  type        = number
  default     = 1000
}

variable "kafka_scram_password" {
  description = "SCRAM password for MSK (ephemeral: never in state). Give it (TF_VAR_kafka_scram_password) on the first apply and when bumping kafka_scram_password_version; leave it unset otherwise."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "kafka_scram_password_version" {
  description = "Bump, with a new kafka_scram_password, to rotate it."
  type        = number
  default     = 1
}

variable "web_origins" {
  description = "Origins of the web app (https://app.example.com): CORS on the API and on the lake for direct uploads' PUTs."
  type        = list(string)
  default     = []
}

variable "enable_redshift" {
  description = "Redshift Serverless + Spectrum (off only where the AWS API has no Redshift Serverless: the offline apply in .ci/infra-check)."
  type        = bool
  default     = true
}

variable "enable_quicksight" {
  description = "QuickSight data source and data set (needs the account's QuickSight subscription; off in the offline apply)."
  type        = bool
  default     = true
}

variable "enable_analyst_grants" {
  description = "Lake Formation grants to the principals and Spectrum (off only in the offline apply, whose API lacks data-cells filters)."
  type        = bool
  default     = true
}

variable "enable_autoscaling" {
  description = "Application Auto Scaling of the api and processors (off only in the offline apply, whose API cannot list a target's tags)."
  type        = bool
  default     = true
}

variable "enable_audit_schedule" {
  description = "The daily imgpipe audit (off only in the offline apply, whose API refuses the provider's GetSchedule)."
  type        = bool
  default     = true
}

variable "lake_policy_denies" {
  description = "The lake bucket policy's denials of requests without TLS or the lake key (off only in the offline apply, whose IAM treats their conditions as always met and would deny everything)."
  type        = bool
  default     = true
}
