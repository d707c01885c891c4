# MSK with SASL/SCRAM over TLS, or nothing when existing_brokers is set.
#
# Topics are not Terraform's: the AWS provider has no topic resource. The
# broker configuration below caps every topic (auto-creation off, retention
# and segment roll bounded), `imgpipe bridge` creates images.dlq and
# imgpipe.received itself with retention.ms/segment.ms set, the image topic
# is created by hand once (infra/README.md, "First run"), and
# `imgpipe audit` reports any topic whose retention could outlive 7 days.

data "aws_caller_identity" "current" {}

locals {
  create = var.existing_brokers == ""
  # A message lives retention.ms + one segment (log.roll.ms) + the broker's
  # 5-minute retention check at most: 7 d - 1 h - 5 min + 1 h + 5 min = 7 d.
  roll_ms      = 3600000
  check_ms     = 300000
  retention_ms = 604800000 - local.roll_ms - local.check_ms
  server_properties = {
    "auto.create.topics.enable"      = "false"
    "log.retention.ms"               = tostring(local.retention_ms)
    "log.retention.bytes"            = "-1"
    "log.roll.ms"                    = tostring(local.roll_ms)
    "log.message.timestamp.type"     = "LogAppendTime"
    "default.replication.factor"     = "3"
    "min.insync.replicas"            = "2"
    "num.partitions"                 = "4"
    "unclean.leader.election.enable" = "false"
    "message.max.bytes"              = tostring(var.max_message_bytes)
    "replica.fetch.max.bytes"        = tostring(var.max_message_bytes)
  }
}

resource "aws_msk_configuration" "this" {
  count             = local.create ? 1 : 0
  name              = "${var.name}-retention"
  kafka_versions    = [var.kafka_version]
  description       = "imgpipe: nothing on a broker outlives 7 days"
  server_properties = join("\n", [for k, v in local.server_properties : "${k}=${v}"])
}

resource "aws_msk_cluster" "this" {
  count                  = local.create ? 1 : 0
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  # Consumer-lag metrics (SumOffsetLag) come at every level; DEFAULT is free.
  enhanced_monitoring = "DEFAULT"

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [var.security_group_id]
    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      scram = true
      iam   = false
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.data_kms_key_arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = var.broker_log_group
      }
    }
  }
}

# --- the SCRAM secret ---------------------------------------------------------
# MSK only associates secrets named AmazonMSK_* and encrypted with a customer
# key. The password comes in through an ephemeral variable and is written
# write-only: it is in Secrets Manager and nowhere in Terraform state or
# plans. Give it on the first apply and whenever password_version is bumped
# (infra/README.md, "Variables"); other applies leave the secret alone.
resource "aws_secretsmanager_secret" "scram" {
  #checkov:skip=CKV2_AWS_57:MSK SCRAM secrets have no rotation Lambda; rotate by bumping password_version (infra/README.md).
  count       = local.create ? 1 : 0
  name        = "AmazonMSK_${var.name}_imgpipe"
  description = "SASL/SCRAM credentials imgpipe uses on MSK ${var.name}"
  kms_key_id  = var.ops_kms_key_arn
}

resource "aws_secretsmanager_secret_version" "scram" {
  count     = local.create ? 1 : 0
  secret_id = aws_secretsmanager_secret.scram[0].id
  secret_string_wo = var.scram_password == null ? null : jsonencode({
    username = var.sasl_username
    password = var.scram_password
  })
  secret_string_wo_version = var.password_version
}

resource "aws_msk_scram_secret_association" "this" {
  count           = local.create ? 1 : 0
  cluster_arn     = aws_msk_cluster.this[0].arn
  secret_arn_list = [aws_secretsmanager_secret.scram[0].arn]
  depends_on      = [aws_secretsmanager_secret_version.scram]
}

# MSK reads the secret through this resource policy.
resource "aws_secretsmanager_secret_policy" "scram" {
  count      = local.create ? 1 : 0
  secret_arn = aws_secretsmanager_secret.scram[0].arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "MskReadsScramSecret"
      Effect    = "Allow"
      Principal = { Service = "kafka.amazonaws.com" }
      Action    = "secretsmanager:GetSecretValue"
      Resource  = aws_secretsmanager_secret.scram[0].arn
      # Only on this account's behalf (the confused-deputy guard).
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
}
