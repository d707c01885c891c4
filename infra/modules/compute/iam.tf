# One task role per mode, least privilege, plus one execution role shared by
# all tasks (pull the image, write logs, read the two secrets).
#
# Lake areas (lake/src/layout.rs): raw/ derived/ metadata/ quarantine/
# idempotency/ erased/. Who writes and deletes what follows the code:
#   api        admission (raw/, idempotency/) and erasure (DELETE /v1/images/{id}):
#              tombstone in erased/, metadata/ rewritten, every version of
#              raw/ derived/ metadata/ quarantine/ idempotency/ purged. Never
#              deletes erased/: tombstones stay until the sweeper expires them.
#   bridge     admission only; it deletes only what it just wrote (raw/,
#              idempotency/) when an erasure or an earlier duplicate raced
#              it (lake/src/admission.rs) — erasure, not housekeeping.
#   processor  writes derived/ metadata/ quarantine/; deletes only those, when
#              an erasure raced processing (processor/src/pipeline.rs
#              erased_meanwhile, sink scrubs, reprocess) — erasure too.
#   sweeper    lists every version, deletes what expired, anywhere; closes
#              settled hours (lake/src/reconcile.rs): merges their metadata/
#              files and writes the hour's checkpoint/ marker.
#   audit      reads only.

locals {
  lake_objects = "${var.lake.bucket_arn}/${var.lake.prefix}"
  area         = { for a in ["raw", "derived", "metadata", "quarantine", "idempotency", "erased", "checkpoint"] : a => "${local.lake_objects}${a}/*" }
  every_area   = "${local.lake_objects}*"

  list_lake = {
    Sid       = "ListLake"
    Effect    = "Allow"
    Action    = ["s3:ListBucket", "s3:ListBucketVersions"]
    Resource  = [var.lake.bucket_arn]
    Condition = { StringLike = { "s3:prefix" = ["${var.lake.prefix}*"] } }
  }
  # HeadBucket (the health check) is authorised by s3:ListBucket with no
  # prefix: a separate statement without the condition.
  head_lake = {
    Sid      = "HeadLake"
    Effect   = "Allow"
    Action   = ["s3:ListBucket"]
    Resource = [var.lake.bucket_arn]
  }
  lake_key_rw = {
    Sid      = "LakeKey"
    Effect   = "Allow"
    Action   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
    Resource = [var.lake.kms_key_arn]
  }
  lake_key_read = {
    Sid      = "LakeKeyDecrypt"
    Effect   = "Allow"
    Action   = ["kms:Decrypt"]
    Resource = [var.lake.kms_key_arn]
  }
  delete = ["s3:DeleteObject", "s3:DeleteObjectVersion"]

  # Kafka: with SASL/SCRAM (what MSK is set up with) Kafka ACLs on the SCRAM
  # user authorise topic access, not IAM. These kafka-cluster statements
  # take effect if the cluster moves to IAM auth, and document the intent.
  cluster_arn = coalesce(var.kafka.cluster_arn, "arn:${local.partition}:kafka:${local.region}:${local.account_id}:cluster/none/none")
  topic_arn   = { for k, t in var.kafka_topics : k => "${replace(local.cluster_arn, ":cluster/", ":topic/")}/${t}" }
  group_arn   = { for k, g in var.kafka_groups : k => "${replace(local.cluster_arn, ":cluster/", ":group/")}/${g}" }
  kafka_statements = {
    api = [
      { Sid = "KafkaConnect", Effect = "Allow", Action = ["kafka-cluster:Connect"], Resource = [local.cluster_arn] },
      { Sid = "KafkaPublishEvents", Effect = "Allow", Action = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"], Resource = [local.topic_arn.events] },
    ]
    bridge = [
      { Sid = "KafkaConnect", Effect = "Allow", Action = ["kafka-cluster:Connect"], Resource = [local.cluster_arn] },
      { Sid = "KafkaReadImages", Effect = "Allow", Action = ["kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration", "kafka-cluster:ReadData"], Resource = [local.topic_arn.images] },
      { Sid = "KafkaOwnTopics", Effect = "Allow", Action = ["kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration", "kafka-cluster:WriteData"], Resource = [local.topic_arn.dlq, local.topic_arn.events] },
      { Sid = "KafkaGroup", Effect = "Allow", Action = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], Resource = [local.group_arn.bridge] },
    ]
    processor = [
      { Sid = "KafkaConnect", Effect = "Allow", Action = ["kafka-cluster:Connect"], Resource = [local.cluster_arn] },
      { Sid = "KafkaReadEvents", Effect = "Allow", Action = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], Resource = [local.topic_arn.events] },
      { Sid = "KafkaGroup", Effect = "Allow", Action = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], Resource = [local.group_arn.processor] },
    ]
    sweeper = []
    audit = [
      { Sid = "KafkaConnect", Effect = "Allow", Action = ["kafka-cluster:Connect"], Resource = [local.cluster_arn] },
      { Sid = "KafkaDescribeTopics", Effect = "Allow", Action = ["kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration"], Resource = values(local.topic_arn) },
    ]
  }

  claim_check_read = length(var.claim_check_allow) == 0 ? [] : [{
    Sid    = "ReadClaimChecks"
    Effect = "Allow"
    Action = ["s3:GetObject"]
    # "bucket" → every object; "bucket/prefix" → keys under the prefix.
    Resource = [for b in var.claim_check_allow : "arn:${local.partition}:s3:::${b}${strcontains(b, "/") ? "*" : "/*"}"]
  }]

  s3_statements = {
    api = [
      local.list_lake, local.head_lake, local.lake_key_rw,
      { Sid = "ReadLake", Effect = "Allow", Action = ["s3:GetObject"], Resource = [local.every_area] },
      { Sid = "Admit", Effect = "Allow", Action = ["s3:PutObject"], Resource = [local.area.raw, local.area.idempotency] },
      { Sid = "EraseWrites", Effect = "Allow", Action = ["s3:PutObject"], Resource = [local.area.erased, local.area.metadata] },
      { Sid = "Erase", Effect = "Allow", Action = local.delete, Resource = [local.area.raw, local.area.derived, local.area.metadata, local.area.quarantine, local.area.idempotency] },
    ]
    bridge = concat([
      local.list_lake, local.head_lake, local.lake_key_rw,
      { Sid = "ReadLake", Effect = "Allow", Action = ["s3:GetObject"], Resource = [local.area.raw, local.area.derived, local.area.quarantine, local.area.idempotency, local.area.erased] },
      { Sid = "Admit", Effect = "Allow", Action = ["s3:PutObject"], Resource = [local.area.raw, local.area.idempotency] },
      { Sid = "TakeBackOwnWrites", Effect = "Allow", Action = local.delete, Resource = [local.area.raw, local.area.idempotency] },
    ], local.claim_check_read)
    processor = [
      local.list_lake, local.head_lake, local.lake_key_rw,
      { Sid = "ReadLake", Effect = "Allow", Action = ["s3:GetObject"], Resource = [local.area.raw, local.area.derived, local.area.metadata, local.area.quarantine, local.area.erased] },
      { Sid = "WriteOutputs", Effect = "Allow", Action = ["s3:PutObject"], Resource = [local.area.derived, local.area.metadata, local.area.quarantine] },
      { Sid = "EraseOwnOutputs", Effect = "Allow", Action = local.delete, Resource = [local.area.derived, local.area.metadata, local.area.quarantine] },
    ]
    sweeper = [
      local.list_lake, local.head_lake, local.lake_key_rw,
      { Sid = "ReadLake", Effect = "Allow", Action = ["s3:GetObject"], Resource = [local.every_area] },
      { Sid = "Expire", Effect = "Allow", Action = local.delete, Resource = [local.every_area] },
      { Sid = "CloseHours", Effect = "Allow", Action = ["s3:PutObject"], Resource = [local.area.metadata, local.area.checkpoint] },
    ]
    audit = [
      local.list_lake, local.head_lake, local.lake_key_read,
      { Sid = "ReadLake", Effect = "Allow", Action = ["s3:GetObject"], Resource = [local.every_area] },
      { Sid = "ReadBucketRules", Effect = "Allow", Action = ["s3:GetLifecycleConfiguration", "s3:GetBucketVersioning"], Resource = [var.lake.bucket_arn] },
    ]
  }

  task_policies = {
    for mode in keys(local.modes) : mode => {
      Version   = "2012-10-17"
      Statement = concat(local.s3_statements[mode], var.kafka.msk_enabled ? local.kafka_statements[mode] : [])
    }
  }
}

locals {
  ecs_tasks_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role" "task" {
  for_each           = local.modes
  name               = "${var.name}-${each.key}"
  description        = "imgpipe ${each.key}: its own lake areas only"
  assume_role_policy = local.ecs_tasks_trust
}

resource "aws_iam_role_policy" "task" {
  for_each = local.modes
  name     = "imgpipe-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = jsonencode(local.task_policies[each.key])
}

# --- execution role: what ECS does before the app runs ----------------------
locals {
  execution_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # GetAuthorizationToken has no resource-level permissions: AWS
        # requires Resource "*" (the token alone reads nothing; the pulls
        # below are scoped to the repository).
        Sid      = "EcrToken"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = "*"
      },
      {
        Sid      = "PullImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        Resource = [aws_ecr_repository.imgpipe.arn]
      },
      {
        Sid      = "WriteLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = [for arn in values(var.log_group_arns) : "${arn}:*"]
      },
      {
        Sid      = "ReadKafkaSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.kafka.sasl_secret_arn]
      },
      {
        Sid      = "ReadConfig"
        Effect   = "Allow"
        Action   = ["ssm:GetParameters"]
        Resource = [aws_ssm_parameter.config.arn]
      },
      {
        Sid      = "DecryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.ops_kms_key_arn]
      },
    ]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  description        = "imgpipe tasks: pull the image, write logs, read the Kafka secret and config"
  assume_role_policy = local.ecs_tasks_trust
}

resource "aws_iam_role_policy" "execution" {
  name   = "imgpipe-execution"
  role   = aws_iam_role.execution.id
  policy = jsonencode(local.execution_policy)
}
