variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "glue_database" {
  description = "Glue database holding the images table."
  type        = string
}

variable "lakeformation_admin_arns" {
  description = "Lake Formation administrators. This list replaces the account's admins: include the role Terraform runs as, or it cannot grant."
  type        = list(string)

  validation {
    condition     = length(var.lakeformation_admin_arns) > 0 && alltrue([for a in var.lakeformation_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "Give at least one IAM role or user ARN."
  }
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

variable "lake_kms_key_arn" {
  description = "The lake key (Lake Formation decrypts metadata/ with it when it vends credentials)."
  type        = string
}
