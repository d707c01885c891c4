# One task role per mode, least privilege, plus one execution role shared by
# all tasks (pull the image, write logs, read the two secrets).
#
# The lake areas each mode reads, writes, lists and deletes are not written
# here: they come from lake/src/access.rs through access.tf.json
# (`imgpipe policies task-access`), next to the layout they name, with the
# reason for each. tests/e2e/access.rs records every request each mode
# makes and fails on one the declaration does not allow, or on a grant no
# request uses; tests/infra/offline_apply.py runs every mode under these
# roles against an AWS API with IAM enforced.

locals {
  lake_objects = "${var.lake.bucket_arn}/${var.lake.prefix}"

  # S3 answers a GET of a missing key with 404 (not 403) only to a caller
  # with s3:ListBucket on the bucket, judged without a prefix: a statement
  # without the prefix condition. It lets a mode list key names of the
  # whole bucket (not read them); the lake bucket holds only the lake.
  head_lake = {
    Sid      = "MissingKeysAre404"
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

  # What each mode reads, writes, lists and deletes: access.tf.json,
  # generated from lake/src/access.rs (the code's one declaration, checked
  # against every request each mode makes by tests/e2e/access.rs).
  object_actions = {
    read   = ["s3:GetObject"]
    write  = ["s3:PutObject"]
    delete = ["s3:DeleteObject"]
    # AWS's DeleteObjects needs s3:DeleteObject even for version ids.
    delete_version = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
  }
  lake_statements = {
    for mode, ops in local.lake_access : mode => concat(
      [for op, actions in local.object_actions : {
        Sid      = "Lake${replace(title(replace(op, "_", " ")), " ", "")}"
        Effect   = "Allow"
        Action   = actions
        Resource = [for p in ops[op] : "${local.lake_objects}${p}*"]
      } if length(ops[op]) > 0],
      [{
        Sid       = "LakeList"
        Effect    = "Allow"
        Action    = ["s3:ListBucket", "s3:ListBucketVersions"]
        Resource  = [var.lake.bucket_arn]
        Condition = { StringLike = { "s3:prefix" = [for p in ops.list : "${var.lake.prefix}${p}*"] } }
      }],
      # The health check (Store::ping).
      [{ Sid = "LakeVersioning", Effect = "Allow", Action = ["s3:GetBucketVersioning"], Resource = [var.lake.bucket_arn] }],
    )
  }

  s3_statements = {
    for mode, statements in local.lake_statements : mode => concat(
      statements,
      [local.head_lake, mode == "audit" ? local.lake_key_read : local.lake_key_rw],
      mode == "bridge" ? local.claim_check_read : [],
      mode == "audit" ? [{ Sid = "ReadBucketRules", Effect = "Allow", Action = ["s3:GetLifecycleConfiguration"], Resource = [var.lake.bucket_arn] }] : [],
    )
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
