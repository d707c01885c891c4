variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "image_tag" {
  description = "Tag of the imgpipe image in this deployment's ECR repository. Tags are immutable: a new script or binary is a new tag."
  type        = string

  validation {
    condition     = var.image_tag != "latest" && can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "Use a real, immutable tag (a git SHA or version), not latest."
  }
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for tasks (and processor instances)."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for an internet-facing ALB."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups from module network: alb, tasks."
  type        = map(string)
}

variable "lake" {
  description = "The lake: bucket name and ARN, key prefix, customer key ARN."
  type = object({
    bucket      = string
    bucket_arn  = string
    prefix      = string
    kms_key_arn = string
  })
}

variable "ops_kms_key_arn" {
  description = "The ops key (Kafka secret, config parameter, ECR)."
  type        = string
}

variable "kafka" {
  description = "Kafka as module kafka outputs it."
  type = object({
    brokers         = string
    msk_enabled     = bool
    cluster_arn     = string
    sasl_secret_arn = string
    sasl_username   = string
  })
}

variable "kafka_topics" {
  description = "The image topic, the dead-letter topic and the events topic."
  type = object({
    images = string
    dlq    = string
    events = string
  })
  default = {
    images = "images"
    dlq    = "images.dlq"
    events = "imgpipe.received"
  }
}

variable "kafka_groups" {
  description = "Consumer groups of the bridge and the processors."
  type = object({
    bridge    = string
    processor = string
  })
  default = {
    bridge    = "imgpipe-bridge"
    processor = "imgpipe-processor"
  }
}

variable "claim_check_allow" {
  description = "Buckets (or bucket/prefix) claim-checks may point into; the bridge may read them. Empty refuses claim-checks."
  type        = list(string)
  default     = []
}

variable "log_groups" {
  description = "Log group name per imgpipe mode (from module observability)."
  type        = map(string)
}

variable "log_group_arns" {
  description = "Log group ARN per imgpipe mode."
  type        = map(string)
}

variable "waf_log_group_arn" {
  description = "Log group ARN for WAF logs (name starts with aws-waf-logs-)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the ALB's HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "alb_internal" {
  description = "Internal ALB (clients inside the VPC or peered) instead of internet-facing."
  type        = bool
  default     = false
}

variable "alb_deletion_protection" {
  description = "Protect the ALB from deletion (prod)."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "Bucket for ALB access logs (module lake's log bucket, 7-day expiry); empty turns them off."
  type        = string
  default     = ""
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes from one address before WAF blocks it."
  type        = number
  default     = 2000
}

variable "api_keys" {
  description = "API keys as [[api.keys]] of the config: the key's SHA-256 (imgpipe keys hash), its policy principal and permissions."
  type = list(object({
    sha256      = string
    principal   = string
    permissions = list(string)
  }))

  validation {
    condition     = length(var.api_keys) > 0 && alltrue([for k in var.api_keys : can(regex("^[0-9a-f]{64}$", k.sha256))])
    error_message = "Give at least one key (the API refuses to listen beyond loopback without keys); sha256 is 64 lowercase hex digits."
  }

  validation {
    condition     = alltrue(flatten([for k in var.api_keys : [for p in k.permissions : contains(["images:write", "images:read", "images:erase", "metrics:read"], p)]]))
    error_message = "Permissions are images:write, images:read, images:erase, metrics:read."
  }
}

variable "script" {
  description = "The processing script, as [processor.script]: command (paths inside the image, WORKDIR /app) and mode. Null: no script."
  type = object({
    command = list(string)
    mode    = string
    timeout = string
  })
  default = {
    command = ["python3", "scripts/example.py", "--stream"]
    mode    = "stream"
    timeout = "30s"
  }
}

variable "script_sandbox" {
  description = "\"bwrap\": processors run on EC2 (ECS capacity provider) where bubblewrap can make its namespaces; \"none\": processors run on Fargate with the script unconfined (it can reach the task's credentials and the network). See infra/README.md, \"The script sandbox on AWS\"."
  type        = string
  default     = "bwrap"

  validation {
    condition     = contains(["bwrap", "none"], var.script_sandbox)
    error_message = "script_sandbox is bwrap or none."
  }
}

variable "processor_instance_types" {
  description = "EC2 instance types for processors when script_sandbox = bwrap (several, for Spot capacity)."
  type        = list(string)
  default     = ["c7g.large", "c6g.large", "m7g.large"]
}

variable "processor_on_demand_percent" {
  description = "Share of processor capacity bought on demand; the rest is Spot (processors resume from Kafka after an interruption)."
  type        = number
  default     = 0
}

variable "processor_spot_weight" {
  description = "With script_sandbox = none: FARGATE_SPOT weight of processors against 1 for FARGATE above the one on-demand base task."
  type        = number
  default     = 3
}

variable "services" {
  description = "Size and count per long-running mode."
  type = map(object({
    cpu     = number
    memory  = number
    desired = number
    min     = number
    max     = number
  }))

  validation {
    condition     = alltrue([for s in ["api", "bridge", "processor", "sweeper"] : contains(keys(var.services), s)])
    error_message = "services needs api, bridge, processor and sweeper."
  }

  validation {
    condition     = var.services["api"].min >= 2 && var.services["bridge"].min >= 1 && var.services["sweeper"].desired == 1
    error_message = "At least 2 API tasks (two AZs), at least 1 bridge, exactly 1 sweeper."
  }
}

variable "audit" {
  description = "The daily audit task: size and schedule (EventBridge Scheduler expression, UTC)."
  type = object({
    cpu      = number
    memory   = number
    schedule = string
  })
  default = {
    cpu      = 512
    memory   = 1024
    schedule = "cron(17 3 * * ? *)"
  }
}

variable "processor_lag_scale_out" {
  description = "SumOffsetLag of the processor group on the events topic above which processors are added."
  type        = number
  default     = 500
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the repository with its images (dev only)."
  type        = bool
  default     = false
}

variable "cpu_architecture" {
  description = "Architecture of the image and the tasks: ARM64 (Graviton, about 20% cheaper per vCPU-hour) or X86_64. Build the image for it (docker buildx --platform)."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.cpu_architecture)
    error_message = "cpu_architecture is ARM64 or X86_64."
  }
}

variable "web_origins" {
  description = "Origins of the web app allowed to call the API from a browser ([api.cors] allowed_origins). Empty: CORS off."
  type        = list(string)
  default     = []
}

variable "enable_autoscaling" {
  description = "Scale the api and processors (Application Auto Scaling). Off only in the offline apply: moto cannot list a scalable target's tags."
  type        = bool
  default     = true
}

variable "enable_audit_schedule" {
  description = "Run imgpipe audit daily (EventBridge Scheduler). Off only in the offline apply: moto refuses the provider's signed GetSchedule (403)."
  type        = bool
  default     = true
}
