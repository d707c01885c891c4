variable "name" {
  description = "Name prefix of the deployment."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of every log group. Logs name images (ids, keys, script output), and CloudWatch deletes expired events up to 72 hours late: 3 days keeps them inside the 7-day promise."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3], var.log_retention_days)
    error_message = "1 or 3: CloudWatch deletes up to 72 hours after retention, so 5 or 7 could keep image ids past 7 days."
  }
}

variable "alarm_email" {
  description = "Optional e-mail address subscribed to the alarm topic (empty: none)."
  type        = string
  default     = ""
}

variable "msk_cluster_name" {
  description = "MSK cluster name for the consumer-lag alarms; null when Kafka is brought (existing_brokers) and MSK metrics do not exist."
  type        = string
  default     = null
}

variable "consumer_lag_threshold" {
  description = "SumOffsetLag (messages behind) above which a consumer group alarms."
  type        = number
  default     = 1000
}

variable "kafka_topics" {
  description = "Topic each consumer group reads: the bridge reads images, the processors read the events topic."
  type        = map(string)
  default = {
    "imgpipe-bridge"    = "images"
    "imgpipe-processor" = "imgpipe.received"
  }
}

variable "alb_arn_suffix" {
  description = "ALB ARN suffix (CloudWatch dimension LoadBalancer)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "API target group ARN suffix (CloudWatch dimension TargetGroup)."
  type        = string
}

variable "alb_5xx_percent" {
  description = "Share of requests answered 5xx by the targets (percent, over 5 minutes) that alarms."
  type        = number
  default     = 5
}

variable "ecs_cluster_arn" {
  description = "ECS cluster where the audit task runs."
  type        = string
}

variable "audit_task_family" {
  description = "Task definition family of imgpipe audit (its stopped tasks with a non-zero exit alarm)."
  type        = string
}
