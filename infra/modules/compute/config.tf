# What each task is told: non-secret settings as IMGPIPE_* variables, the
# Kafka password from Secrets Manager, and the parts of the config that are
# lists of tables ([[api.keys]], [processor.script]) as a whole TOML file
# from an SSM SecureString parameter, read by the binary from
# IMGPIPE_CONFIG_TOML.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  telemetry_port = 9464
  api_port       = 8080

  # jsonencode of a string or a list of strings is valid TOML too.
  config_toml = join("\n", concat(
    ["# Rendered by infra/modules/compute/config.tf; the rest of the config is IMGPIPE_* variables."],
    flatten([for k in var.api_keys : [
      "",
      "[[api.keys]]",
      "sha256 = ${jsonencode(k.sha256)}",
      "principal = ${jsonencode(k.principal)}",
      "permissions = ${jsonencode(k.permissions)}",
    ]]),
    var.script == null ? [] : [
      "",
      "[processor.script]",
      "command = ${jsonencode(var.script.command)}",
      "mode = ${jsonencode(var.script.mode)}",
      "timeout = ${jsonencode(var.script.timeout)}",
    ],
  ))

  common_env = {
    IMGPIPE_LOG_FORMAT                 = "json"
    IMGPIPE_LAKE__S3__BUCKET           = var.lake.bucket
    IMGPIPE_LAKE__S3__PREFIX           = var.lake.prefix
    IMGPIPE_LAKE__S3__REGION           = local.region
    IMGPIPE_LAKE__S3__FORCE_PATH_STYLE = "false"
    # The bucket policy refuses any PUT without both.
    IMGPIPE_LAKE__S3__SSE            = "aws:kms"
    IMGPIPE_LAKE__S3__SSE_KMS_KEY_ID = var.lake.kms_key_arn
  }
  kafka_env = {
    IMGPIPE_KAFKA_BROKERS            = var.kafka.brokers
    IMGPIPE_KAFKA_TOPIC              = var.kafka_topics.images
    IMGPIPE_KAFKA_DLQ_TOPIC          = var.kafka_topics.dlq
    IMGPIPE_KAFKA_EVENTS_TOPIC       = var.kafka_topics.events
    IMGPIPE_KAFKA_GROUP              = var.kafka_groups.bridge
    IMGPIPE_KAFKA__PROCESS_GROUP     = var.kafka_groups.processor
    IMGPIPE_KAFKA__SECURITY_PROTOCOL = "sasl_ssl"
    IMGPIPE_KAFKA__SASL_MECHANISM    = "SCRAM-SHA-512"
    IMGPIPE_KAFKA__SASL_USERNAME     = var.kafka.sasl_username
    IMGPIPE_KAFKA__ENFORCE_RETENTION = "true"
  }
  telemetry_env = {
    IMGPIPE_TELEMETRY__LISTEN = "0.0.0.0:${local.telemetry_port}"
  }

  kafka_password = {
    IMGPIPE_KAFKA__SASL_PASSWORD = "${var.kafka.sasl_secret_arn}:password::"
  }
  config_file = {
    IMGPIPE_CONFIG_TOML = aws_ssm_parameter.config.arn
  }

  # Per mode: the command after the entrypoint (imgpipe), its settings and
  # secrets. Every mode but the API answers /healthz and /metrics on the
  # telemetry listener.
  # The API sits behind the ALB: per-address rate limits count the client
  # the ALB saw (the last X-Forwarded-For entry), not the ALB.
  api_env = merge(
    { IMGPIPE_API__RATE_LIMIT__TRUST_FORWARDED_FOR = "true" },
    length(var.web_origins) > 0 ? { IMGPIPE_API__CORS__ALLOWED_ORIGINS = join(",", var.web_origins) } : {},
  )

  modes = {
    api = {
      command = ["serve", "--listen", "0.0.0.0:${local.api_port}"]
      env     = merge(local.common_env, local.kafka_env, local.api_env)
      secrets = merge(local.kafka_password, local.config_file)
      port    = local.api_port
    }
    bridge = {
      command = ["bridge"]
      # Unset when empty: "" would be one empty entry, not an empty list.
      env = merge(local.common_env, local.kafka_env, local.telemetry_env,
        length(var.claim_check_allow) == 0 ? {} : { IMGPIPE_KAFKA__CLAIM_CHECK_ALLOW = join(",", var.claim_check_allow) },
      )
      secrets = local.kafka_password
      port    = local.telemetry_port
    }
    processor = {
      command = ["process"]
      # Only with a script: the variable alone would make a [processor.script]
      # table without a command.
      env = merge(local.common_env, local.kafka_env, local.telemetry_env,
        var.script == null ? {} : { IMGPIPE_PROCESSOR__SCRIPT__SANDBOX = var.script_sandbox },
      )
      secrets = merge(local.kafka_password, local.config_file)
      port    = local.telemetry_port
    }
    sweeper = {
      command = ["sweep"]
      env     = merge(local.common_env, local.telemetry_env)
      secrets = {}
      port    = local.telemetry_port
    }
    audit = {
      # The audit also checks topic retention: it needs Kafka.
      command = ["audit", "--format", "json"]
      env     = merge(local.common_env, local.kafka_env)
      secrets = local.kafka_password
      port    = null
    }
  }
}

resource "aws_ssm_parameter" "config" {
  name        = "/imgpipe/${var.name}/config.toml"
  description = "imgpipe config file parts that are lists of tables: [[api.keys]] (key digests) and [processor.script]"
  type        = "SecureString"
  key_id      = var.ops_kms_key_arn
  value       = local.config_toml
}
