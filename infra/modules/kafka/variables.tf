variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "existing_brokers" {
  description = "Bring your own Kafka: its bootstrap brokers (host:port,…). When set, no MSK cluster is made and the SASL secret must be given in existing_sasl_secret_arn."
  type        = string
  default     = ""
}

variable "existing_sasl_secret_arn" {
  description = "With existing_brokers: a Secrets Manager secret holding {\"username\",\"password\"} for SASL/SCRAM."
  type        = string
  default     = ""

  validation {
    condition     = var.existing_sasl_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.existing_sasl_secret_arn))
    error_message = "existing_sasl_secret_arn must be a Secrets Manager ARN."
  }
}

variable "existing_sasl_username" {
  description = "With existing_brokers: the SASL/SCRAM username (the password comes from existing_sasl_secret_arn)."
  type        = string
  default     = ""
}

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.6.0"
}

variable "broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.t3.small"
}

variable "broker_count" {
  description = "Brokers: a multiple of the subnets' AZ count."
  type        = number
  default     = 3
}

variable "broker_volume_gb" {
  description = "EBS per broker. Messages live under 7 days: size for a week of peak traffic plus replication."
  type        = number
  default     = 100
}

variable "subnet_ids" {
  description = "Private subnets, one per AZ."
  type        = list(string)
}

variable "security_group_id" {
  description = "Broker security group (port 9096 from the tasks)."
  type        = string
}

variable "data_kms_key_arn" {
  description = "Key for data at rest on the brokers (messages are images): the lake key."
  type        = string
}

variable "ops_kms_key_arn" {
  description = "Key for the SCRAM secret (MSK refuses secrets under the AWS-managed key)."
  type        = string
}

variable "broker_log_group" {
  description = "CloudWatch log group for broker logs (7-day retention)."
  type        = string
}

variable "sasl_username" {
  description = "SCRAM user imgpipe connects as."
  type        = string
  default     = "imgpipe"
}

variable "password_version" {
  description = "Bump, with a new scram_password, to rotate the SCRAM password (it is write-only: never in state)."
  type        = number
  default     = 1
}

variable "max_message_bytes" {
  description = "Largest message the brokers take. Bigger images go as claim-checks ({\"s3_uri\": …})."
  type        = number
  default     = 10485760
}

variable "scram_password" {
  description = "SCRAM password imgpipe uses on MSK (ephemeral: never in state). Needed on the first apply and with each password_version bump; null otherwise leaves the secret as it is."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}
