variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "cidr" {
  description = "The VPC's address range (a /16 leaves room for 3 × 2 subnets of /20)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones used. Redshift Serverless wants subnets in 3 AZs; MSK brokers are a multiple of it."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "Use 2 or 3 availability zones (3 for Redshift Serverless)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, dev) instead of one per AZ (an AZ outage keeps egress, prod). Lake traffic never uses NAT: it takes the S3 gateway endpoint."
  type        = bool
  default     = false
}

variable "flow_log_group_arn" {
  description = "CloudWatch log group for VPC flow logs (made by module observability, 7-day retention)."
  type        = string
}
