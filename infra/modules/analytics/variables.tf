variable "catalog_id" {
  description = "AWS account id of the Glue Data Catalog."
  type        = string
}

variable "glue_database" {
  description = "Glue database holding the images table."
  type        = string
}

variable "glue_table" {
  description = "The Glue table over metadata/."
  type        = string
  default     = "images"
}

variable "bucket" {
  description = "The lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket (empty, or ending in /)."
  type        = string
  default     = ""
}

variable "principal_arns" {
  description = "IAM ARN of each policy principal of policies/default.toml (analyst, privacy-officer, kafka-analyst); lakeformation.tf.json grants to var.principal_arns[\"<name>\"]."
  type        = map(string)

  validation {
    condition     = alltrue([for arn in values(var.principal_arns) : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user|group)/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "Every principal_arns value must be an IAM role, user or group ARN (arn:aws:iam::<12-digit account>:role/<name>)."
  }

  validation {
    condition     = alltrue([for p in ["analyst", "privacy-officer", "kafka-analyst"] : contains(keys(var.principal_arns), p)])
    error_message = "principal_arns needs an ARN for every principal of policies/default.toml: analyst, privacy-officer, kafka-analyst."
  }
}

variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "lake_kms_key_arn" {
  description = "The lake key: Athena results and Redshift are encrypted with it (they hold rows of the lake)."
  type        = string
}

variable "athena_results_bucket" {
  description = "Bucket for Athena query results (copies of rows: they expire within a day)."
  type        = string
}

variable "athena_results_days" {
  description = "Days a query result lives (a copy of lake rows: at most 7, and shorter is better)."
  type        = number
  default     = 1

  validation {
    condition     = var.athena_results_days >= 1 && var.athena_results_days <= 6
    error_message = "Query results are copies of rows: 1 to 6 days (plus the noncurrent day, at most 7)."
  }
}

variable "bytes_scanned_cutoff_per_query" {
  description = "Athena cancels a query past this many bytes scanned (cost guard; partition projection keeps normal queries far below)."
  type        = number
  default     = 10737418240
}

variable "log_bucket" {
  description = "Access-log bucket (from module lake)."
  type        = string
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty results bucket (dev only)."
  type        = bool
  default     = false
}

variable "redshift_base_rpu" {
  description = "Redshift Serverless base capacity (RPUs, 8 minimum). Billed per second of use only."
  type        = number
  default     = 8
}

variable "redshift_max_rpu" {
  description = "Redshift Serverless ceiling (RPUs): the cost cap."
  type        = number
  default     = 32
}

variable "subnet_ids" {
  description = "Private subnets (3 AZs) for the Redshift workgroup."
  type        = list(string)
}

variable "redshift_security_group_id" {
  description = "Security group of the Redshift workgroup."
  type        = string
}

variable "spectrum_schema" {
  description = "Redshift external schema over the Glue database."
  type        = string
  default     = "imgpipe"
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group ARN that owns the data source and data set."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:[0-9]{12}:(user|group)/", var.quicksight_principal_arn))
    error_message = "quicksight_principal_arn must be a QuickSight user or group ARN."
  }
}

# Switches for the parts an offline AWS API (moto, in .ci/infra-check) does
# not implement; on everywhere else.
variable "enable_redshift" {
  description = "Create the Redshift Serverless namespace, workgroup and Spectrum schema."
  type        = bool
  default     = true
}

variable "enable_quicksight" {
  description = "Create the QuickSight data source and data set (the account needs a QuickSight subscription)."
  type        = bool
  default     = true
}

variable "enable_analyst_grants" {
  description = "The principals' Lake Formation grants, row filters and column tags (lakeformation.tf.json) and Spectrum's grants. Off only in the offline apply: its API has no data-cells filters, cannot read tag-based grants back nor remove column tags."
  type        = bool
  default     = true
}
