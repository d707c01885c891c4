# Offline checks of this env, with its terraform.tfvars and a mock AWS
# provider: nothing is created, `command = apply` only makes the mock's
# computed values known. Run by .ci/infra-check (terraform test).
#
# Run "stack" applies the whole env (the wiring, and what modules export);
# the other runs apply one module each with this env's values, so their
# assertions can look at the module's resources.

mock_provider "aws" {
  source = "./tests"
}

variables {
  # The SCRAM password is an ephemeral input; any value will do here.
  kafka_scram_password = "not-a-real-password"

  # Fixed ARNs for the module runs' cross-module inputs.
  t_lake_key   = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-00000000lake"
  t_ops_key    = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000ops"
  t_cluster    = "arn:aws:kafka:us-east-1:111122223333:cluster/imgpipe/0f0f0f0f-1111-2222-3333-444444444444-1"
  t_secret     = "arn:aws:secretsmanager:us-east-1:111122223333:secret:AmazonMSK_imgpipe_imgpipe-AbCdEf"
  t_log_groups = ["api", "bridge", "processor", "sweeper", "audit"]
}

# --- the whole env ------------------------------------------------------------------
run "stack" {
  command = apply

  override_resource {
    target = module.lake.aws_kms_key.lake
    values = { arn = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-00000000lake" }
  }
  override_resource {
    target = module.lake.aws_s3_bucket.lake
    values = { arn = "arn:aws:s3:::lake-under-test", id = "lake-under-test" }
  }
  override_resource {
    target = module.kafka.aws_msk_cluster.this
    values = {
      arn                          = "arn:aws:kafka:us-east-1:111122223333:cluster/imgpipe/0f0f0f0f-1111-2222-3333-444444444444-1"
      bootstrap_brokers_sasl_scram = "b-1.imgpipe.kafka.us-east-1.amazonaws.com:9096,b-2.imgpipe.kafka.us-east-1.amazonaws.com:9096"
    }
  }

  # Who may delete: the sweeper (expiry, anywhere), the API (erasure, never
  # tombstones), the processor (its own outputs, when an erasure raced it)
  # and the bridge (what it just admitted, when an erasure or an earlier
  # duplicate raced it). Nobody else.
  assert {
    condition = toset([
      for mode, p in module.compute.task_policies : mode
      if anytrue([for s in p.Statement : anytrue([for a in flatten([s.Action]) : startswith(a, "s3:DeleteObject")])])
    ]) == toset(["sweeper", "api", "processor", "bridge"])
    error_message = "Only the sweeper, the API (erasure), the processor and the bridge (their own writes, on erasure races) may delete."
  }
  assert {
    condition = alltrue(flatten([
      for s in module.compute.task_policies["processor"].Statement : [
        for r in flatten([s.Resource]) : can(regex("/(derived|metadata|quarantine)/\\*$", r))
      ] if anytrue([for a in flatten([s.Action]) : startswith(a, "s3:DeleteObject")])
    ]))
    error_message = "The processor may delete only under derived/, metadata/ and quarantine/."
  }
  assert {
    condition = alltrue(flatten([
      for s in module.compute.task_policies["bridge"].Statement : [
        for r in flatten([s.Resource]) : can(regex("/(raw|idempotency|expiry|checkpoint)/\\*$", r))
      ] if anytrue([for a in flatten([s.Action]) : startswith(a, "s3:DeleteObject")])
    ]))
    error_message = "The bridge may delete only under raw/, idempotency/, expiry/ (what it admits) and checkpoint/ (reopening a closed hour)."
  }
  assert {
    condition = alltrue(flatten([
      for s in module.compute.task_policies["api"].Statement : [
        for r in flatten([s.Resource]) : !can(regex("/erased/", r))
      ] if anytrue([for a in flatten([s.Action]) : startswith(a, "s3:DeleteObject")])
    ]))
    error_message = "The API must not delete erasure tombstones (erased/)."
  }
  assert {
    condition = alltrue(flatten([
      for s in module.compute.task_policies["audit"].Statement : [
        for a in flatten([s.Action]) : !can(regex("^s3:(Put|Delete)", a))
      ]
    ]))
    error_message = "The audit is read-only."
  }
  # No Allow statement grants "*", "s3:*" or any service wildcard; Resource
  # "*" only where AWS has no resource-level permission for the action.
  assert {
    condition = alltrue(flatten([
      for p in concat(values(module.compute.task_policies), [module.compute.execution_policy, module.compute.scheduler_policy]) : [
        for s in p.Statement : [
          for a in flatten([s.Action]) : a != "*" && a != "s3:*" && !endswith(a, ":*")
        ] if s.Effect == "Allow"
      ]
    ]))
    error_message = "No Allow statement of an ECS role may grant \"*\", \"s3:*\" or a service wildcard."
  }
  assert {
    condition = alltrue(flatten([
      for p in concat(values(module.compute.task_policies), [module.compute.execution_policy, module.compute.scheduler_policy]) : [
        for s in p.Statement :
        !contains(flatten([s.Resource]), "*") || toset(flatten([s.Action])) == toset(["ecr:GetAuthorizationToken"])
      ]
    ]))
    error_message = "Resource \"*\" is tolerated only for ecr:GetAuthorizationToken (no resource-level permissions)."
  }
  assert {
    condition = alltrue(flatten([
      for p in values(module.compute.task_policies) : [
        for s in p.Statement : [for r in flatten([s.Resource]) : r == module.lake.kms_key_arn]
        if anytrue([for a in flatten([s.Action]) : startswith(a, "kms:")])
      ]
    ]))
    error_message = "Task roles may use the lake key and no other key."
  }
  assert {
    condition = alltrue([
      for c in values(module.compute.container_definitions) :
      contains([for e in c.environment : "${e.name}=${e.value}"], "IMGPIPE_LAKE__S3__SSE=aws:kms") &&
      contains([for e in c.environment : "${e.name}=${e.value}"], "IMGPIPE_LAKE__S3__SSE_KMS_KEY_ID=${module.lake.kms_key_arn}") &&
      contains([for e in c.environment : "${e.name}=${e.value}"], "IMGPIPE_LAKE__S3__BUCKET=${module.lake.bucket}")
    ])
    error_message = "Every task writes to the lake bucket with SSE-KMS under the lake key (the bucket policy refuses anything else)."
  }
  assert {
    condition     = module.kafka.msk_enabled && startswith(module.kafka.bootstrap_brokers, "b-1.imgpipe")
    error_message = "Without existing_brokers the env makes MSK and the tasks use its SCRAM brokers."
  }
}

run "stack_bring_your_own_kafka" {
  command = apply

  variables {
    existing_brokers         = "kafka-1.internal:9096,kafka-2.internal:9096"
    existing_sasl_secret_arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:imgpipe-kafka-AbCdEf"
    existing_sasl_username   = "imgpipe"
  }

  assert {
    condition     = !module.kafka.msk_enabled && module.kafka.cluster_arn == null
    error_message = "existing_brokers: no MSK cluster."
  }
  assert {
    condition     = contains([for e in module.compute.container_definitions["bridge"].environment : "${e.name}=${e.value}"], "IMGPIPE_KAFKA_BROKERS=kafka-1.internal:9096,kafka-2.internal:9096")
    error_message = "existing_brokers: the tasks use the given brokers."
  }
  assert {
    condition     = alltrue([for p in values(module.compute.task_policies) : alltrue([for s in p.Statement : !startswith(flatten([s.Action])[0], "kafka-cluster:")])])
    error_message = "existing_brokers: no MSK IAM statements."
  }
}

# --- module by module --------------------------------------------------------------
run "lake" {
  command = apply
  module {
    source = "../../modules/lake"
  }
  variables {
    name          = var.name
    bucket        = var.lake_bucket
    log_bucket    = var.log_bucket
    force_destroy = var.force_destroy
  }
  override_resource {
    target = aws_kms_key.lake
    values = { arn = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-00000000lake" }
  }
  override_resource {
    target = aws_s3_bucket.lake
    values = { arn = "arn:aws:s3:::lake-under-test", id = "lake-under-test" }
  }

  assert {
    condition = alltrue(flatten([
      for st in jsondecode(aws_kms_key.lake.policy).Statement : [for a in flatten([st.Action]) : a != "kms:*"]
    ]))
    error_message = "The lake key's policy names what it allows; no kms:*."
  }
  assert {
    condition = alltrue([
      for st in jsondecode(aws_s3_bucket_policy.logs.policy).Statement :
      can(st.Condition.StringEquals["aws:SourceAccount"]) && can(st.Condition.ArnLike["aws:SourceArn"])
      if try(st.Principal.Service, "") == "logging.s3.amazonaws.com"
    ])
    error_message = "The log bucket lets S3's logging service in only for this account's buckets (aws:SourceAccount, aws:SourceArn); ALB logs are confined to AWSLogs/<account>/ by their resource."
  }

  # The code's retention is 7 days (retention.period, at most 7d): every
  # lifecycle rule that expires objects does so at 7 days; noncurrent
  # versions go a day later at most.
  assert {
    condition = alltrue([
      for r in aws_s3_bucket_lifecycle_configuration.lake.rule :
      alltrue([for e in r.expiration : e.days == 7 if coalesce(e.days, 0) > 0])
    ])
    error_message = "Every lake lifecycle rule that expires objects must expire them at 7 days (the code's retention)."
  }
  assert {
    condition = length(flatten([
      for r in aws_s3_bucket_lifecycle_configuration.lake.rule : [for e in r.expiration : e if coalesce(e.days, 0) > 0]
    ])) > 0
    error_message = "The lake needs a lifecycle rule expiring current objects."
  }
  assert {
    condition = alltrue(flatten([
      for r in aws_s3_bucket_lifecycle_configuration.lake.rule : [for n in r.noncurrent_version_expiration : n.noncurrent_days <= 1]
    ]))
    error_message = "Noncurrent lake versions must expire within a day."
  }
  assert {
    condition     = aws_s3_bucket_versioning.lake.versioning_configuration[0].status == "Enabled"
    error_message = "The lifecycle rules expire noncurrent versions and the sweeper deletes by version id: versioning must be Enabled."
  }
  assert {
    condition = alltrue([
      for r in aws_s3_bucket_server_side_encryption_configuration.lake.rule :
      r.apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" &&
      r.apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.lake.arn &&
      r.bucket_key_enabled
    ])
    error_message = "The lake must default to SSE-KMS with the lake key and a bucket key."
  }
  assert {
    condition     = aws_kms_key.lake.enable_key_rotation
    error_message = "The lake key must rotate."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.lake[0].policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*" &&
      try(s.Condition.Bool["aws:SecureTransport"], "") == "false" &&
      toset(flatten([s.Resource])) == toset([aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"])
    ])
    error_message = "The lake bucket policy must deny every request made without TLS (aws:SecureTransport = false)."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.lake[0].policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:PutObject" &&
      try(s.Condition.StringNotEquals["s3:x-amz-server-side-encryption"], "") == "aws:kms"
    ])
    error_message = "The lake bucket policy must deny PutObject without x-amz-server-side-encryption: aws:kms."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.lake[0].policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:PutObject" &&
      try(s.Condition.StringNotEquals["s3:x-amz-server-side-encryption-aws-kms-key-id"], "") == aws_kms_key.lake.arn
    ])
    error_message = "The lake bucket policy must deny PutObject under any key but the lake key."
  }
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.lake.block_public_acls,
      aws_s3_bucket_public_access_block.lake.block_public_policy,
      aws_s3_bucket_public_access_block.lake.ignore_public_acls,
      aws_s3_bucket_public_access_block.lake.restrict_public_buckets,
      aws_s3_bucket_ownership_controls.lake.rule[0].object_ownership == "BucketOwnerEnforced",
    ])
    error_message = "The lake must block all public access and disable ACLs (BucketOwnerEnforced)."
  }
  # Access logs name image keys: they go within 7 days too.
  assert {
    condition = alltrue([
      for r in aws_s3_bucket_lifecycle_configuration.logs.rule :
      alltrue([for e in r.expiration : e.days + sum(concat([0], [for n in r.noncurrent_version_expiration : n.noncurrent_days])) <= 7 if coalesce(e.days, 0) > 0])
    ])
    error_message = "Access logs (and their noncurrent versions) must be gone within 7 days."
  }
}

run "observability" {
  command = apply
  module {
    source = "../../modules/observability"
  }
  variables {
    name                    = var.name
    alarm_email             = ""
    msk_cluster_name        = "imgpipe"
    alb_arn_suffix          = "app/imgpipe/0123456789abcdef"
    target_group_arn_suffix = "targetgroup/imgpipe-api/0123456789abcdef"
    ecs_cluster_arn         = "arn:aws:ecs:us-east-1:111122223333:cluster/imgpipe"
    audit_task_family       = "imgpipe-audit"
  }

  assert {
    condition = alltrue([
      for g in concat(values(aws_cloudwatch_log_group.service), values(aws_cloudwatch_log_group.platform)) :
      g.retention_in_days >= 1 && g.retention_in_days <= 3
    ])
    error_message = "Every CloudWatch log group must keep logs 1 to 3 days: logs name images, and CloudWatch deletes up to 72 h late."
  }
  assert {
    condition = alltrue([
      for g in concat(values(aws_cloudwatch_log_group.service), values(aws_cloudwatch_log_group.platform)) :
      g.kms_key_id == aws_kms_key.ops.arn
    ])
    error_message = "Every log group must be encrypted with the ops key."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_kms_key.ops.policy).Statement :
      try(s.Principal.Service, "") == "logs.us-east-1.amazonaws.com" && can(s.Condition.ArnLike["kms:EncryptionContext:aws:logs:arn"])
    ])
    error_message = "The ops key must let CloudWatch Logs (and only for this account's log groups) encrypt."
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_log_metric_filter.event)) == toset(["dead_letter", "sweep_failed", "audit_failed", "quarantined"])
    error_message = "Metric filters must cover the app's stable log events."
  }
  assert {
    condition     = aws_cloudwatch_log_metric_filter.event["dead_letter"].pattern == "{ $.fields.event = \"dead_letter\" }"
    error_message = "Metric filters match tracing-subscriber's JSON: $.fields.event."
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.consumer_lag)) == toset(["imgpipe-bridge", "imgpipe-processor"]) && alltrue([for a in values(aws_cloudwatch_metric_alarm.consumer_lag) : a.metric_name == "SumOffsetLag"])
    error_message = "Both consumer groups need a SumOffsetLag alarm."
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.audit_task_failed.event_pattern).detail.containers.exitCode[0]["anything-but"] == 0
    error_message = "A stopped audit task with a non-zero exit code must alarm."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.no_healthy_hosts.metric_name == "HealthyHostCount" && length(aws_cloudwatch_metric_alarm.alb_5xx.metric_query) == 3
    error_message = "The API alarms on no healthy hosts and on its 5xx rate."
  }
}

run "kafka" {
  command = apply
  module {
    source = "../../modules/kafka"
  }
  variables {
    name                 = var.name
    broker_instance_type = var.msk_broker_instance_type
    broker_volume_gb     = var.msk_broker_volume_gb
    subnet_ids           = ["subnet-a", "subnet-b", "subnet-c"]
    security_group_id    = "sg-kafka"
    data_kms_key_arn     = var.t_lake_key
    ops_kms_key_arn      = var.t_ops_key
    broker_log_group     = "/imgpipe/test/msk-brokers"
    scram_password       = "not-a-real-password"
  }

  assert {
    condition     = tonumber({ for l in split("\n", aws_msk_configuration.this[0].server_properties) : split("=", l)[0] => split("=", l)[1] }["log.retention.ms"]) <= 604800000
    error_message = "MSK log.retention.ms must be at most 7 days (604800000)."
  }
  assert {
    condition = (
      tonumber({ for l in split("\n", aws_msk_configuration.this[0].server_properties) : split("=", l)[0] => split("=", l)[1] }["log.retention.ms"]) +
      tonumber({ for l in split("\n", aws_msk_configuration.this[0].server_properties) : split("=", l)[0] => split("=", l)[1] }["log.roll.ms"]) +
      300000 <= 604800000
    )
    error_message = "retention.ms + the segment roll + the 5-minute retention check must fit in 7 days: nothing may outlive it."
  }
  assert {
    condition     = { for l in split("\n", aws_msk_configuration.this[0].server_properties) : split("=", l)[0] => split("=", l)[1] }["auto.create.topics.enable"] == "false"
    error_message = "Topics are created with their retention, never implicitly."
  }
  assert {
    condition     = aws_msk_cluster.this[0].client_authentication[0].sasl[0].scram && aws_msk_cluster.this[0].encryption_info[0].encryption_in_transit[0].client_broker == "TLS"
    error_message = "MSK: SASL/SCRAM clients over TLS only."
  }
  assert {
    condition     = aws_msk_cluster.this[0].encryption_info[0].encryption_at_rest_kms_key_arn == var.t_lake_key
    error_message = "Messages are images: encrypted at rest with the lake key."
  }
  assert {
    condition     = startswith(aws_secretsmanager_secret.scram[0].name, "AmazonMSK_") && aws_secretsmanager_secret.scram[0].kms_key_id == var.t_ops_key
    error_message = "MSK only takes SCRAM secrets named AmazonMSK_* under a customer key."
  }
}

run "catalog" {
  command = apply
  module {
    source = "../../modules/catalog"
  }
  variables {
    name                     = var.name
    glue_database            = var.glue_database
    lakeformation_admin_arns = var.lakeformation_admin_arns
    bucket                   = var.lake_bucket
    lake_prefix              = var.lake_prefix
    lake_kms_key_arn         = var.t_lake_key
  }

  assert {
    condition = (
      length(aws_lakeformation_data_lake_settings.this.create_database_default_permissions) == 0 &&
      length(aws_lakeformation_data_lake_settings.this.create_table_default_permissions) == 0
    )
    error_message = "Lake Formation defaults must leave IAM_ALLOWED_PRINCIPALS out (no default permissions at all)."
  }
  assert {
    condition     = aws_lakeformation_resource.metadata.arn == "arn:aws:s3:::${var.lake_bucket}/${var.lake_prefix}metadata/"
    error_message = "Lake Formation registers exactly the lake's metadata/ location."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.location.policy).Statement :
      !contains(flatten([s.Action]), "s3:*") && !contains(flatten([s.Resource]), "*")
    ])
    error_message = "The location role reads metadata/ only."
  }
}

run "analytics" {
  command = apply
  module {
    source = "../../modules/analytics"
  }
  variables {
    name                       = var.name
    catalog_id                 = "111122223333"
    glue_database              = var.glue_database
    bucket                     = var.lake_bucket
    lake_prefix                = var.lake_prefix
    principal_arns             = var.principal_arns
    lake_kms_key_arn           = var.t_lake_key
    athena_results_bucket      = var.athena_results_bucket
    log_bucket                 = var.log_bucket
    subnet_ids                 = ["subnet-a", "subnet-b", "subnet-c"]
    redshift_security_group_id = "sg-redshift"
    quicksight_principal_arn   = var.quicksight_principal_arn
  }

  assert {
    condition     = aws_quicksight_data_set.images[0].import_mode == "DIRECT_QUERY"
    error_message = "QuickSight must query directly: SPICE would keep copies of rows past 7 days."
  }
  assert {
    condition = alltrue([
      for r in aws_s3_bucket_lifecycle_configuration.results.rule :
      alltrue([for e in r.expiration : e.days + sum(concat([0], [for n in r.noncurrent_version_expiration : n.noncurrent_days])) <= 7 if coalesce(e.days, 0) > 0])
    ])
    error_message = "Athena results (copies of rows) must expire within 7 days, noncurrent versions included."
  }
  assert {
    condition = (
      aws_athena_workgroup.this.configuration[0].enforce_workgroup_configuration &&
      aws_athena_workgroup.this.configuration[0].result_configuration[0].encryption_configuration[0].encryption_option == "SSE_KMS" &&
      aws_athena_workgroup.this.configuration[0].bytes_scanned_cutoff_per_query > 0
    )
    error_message = "Athena: the workgroup's settings are enforced, results SSE-KMS, a per-query scan cutoff."
  }
  assert {
    condition     = !aws_redshiftserverless_workgroup.this[0].publicly_accessible && aws_redshiftserverless_namespace.this[0].kms_key_id == var.t_lake_key
    error_message = "Redshift Serverless: private, encrypted with the lake key."
  }
  assert {
    condition     = startswith(aws_redshiftdata_statement.spectrum_schema[0].sql, "CREATE EXTERNAL SCHEMA IF NOT EXISTS")
    error_message = "The Spectrum schema is created through the Redshift Data API."
  }
  assert {
    condition     = aws_lakeformation_permissions.spectrum[0].lf_tag_policy[0].expression == aws_lakeformation_permissions.analyst[0].lf_tag_policy[0].expression
    error_message = "The Spectrum role sees exactly the analyst's view."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.spectrum.policy).Statement :
      !contains(flatten([s.Resource]), "*") || toset(flatten([s.Action])) == toset(["lakeformation:GetDataAccess"])
    ])
    error_message = "Resource \"*\" only for lakeformation:GetDataAccess (no resource-level permissions)."
  }
}

run "principal_arns_must_be_iam_arns" {
  command = plan
  module {
    source = "../../modules/analytics"
  }
  variables {
    name          = var.name
    catalog_id    = "111122223333"
    glue_database = var.glue_database
    bucket        = var.lake_bucket
    principal_arns = {
      "analyst"         = "imgpipe-analyst"
      "privacy-officer" = "arn:aws:iam::111122223333:role/imgpipe-privacy-officer"
      "kafka-analyst"   = "arn:aws:iam::111122223333:role/imgpipe-kafka-analyst"
    }
    lake_kms_key_arn           = var.t_lake_key
    athena_results_bucket      = var.athena_results_bucket
    log_bucket                 = var.log_bucket
    subnet_ids                 = ["subnet-a", "subnet-b", "subnet-c"]
    redshift_security_group_id = "sg-redshift"
    quicksight_principal_arn   = var.quicksight_principal_arn
  }
  expect_failures = [var.principal_arns]
}

run "compute" {
  command = apply
  module {
    source = "../../modules/compute"
  }
  variables {
    name                     = var.name
    image_tag                = var.image_tag
    vpc_id                   = "vpc-1"
    private_subnet_ids       = ["subnet-a", "subnet-b", "subnet-c"]
    public_subnet_ids        = ["subnet-d", "subnet-e", "subnet-f"]
    security_group_ids       = { alb = "sg-alb", tasks = "sg-tasks" }
    certificate_arn          = var.certificate_arn
    alb_deletion_protection  = var.alb_deletion_protection
    api_keys                 = var.api_keys
    script_sandbox           = var.script_sandbox
    processor_instance_types = var.processor_instance_types
    services                 = var.services
    claim_check_allow        = var.claim_check_allow
    log_groups               = { for m in var.t_log_groups : m => "/imgpipe/test/${m}" }
    log_group_arns           = { for m in var.t_log_groups : m => "arn:aws:logs:us-east-1:111122223333:log-group:/imgpipe/test/${m}" }
    waf_log_group_arn        = "arn:aws:logs:us-east-1:111122223333:log-group:aws-waf-logs-test"
    ops_kms_key_arn          = var.t_ops_key
    lake = {
      bucket      = var.lake_bucket
      bucket_arn  = "arn:aws:s3:::${var.lake_bucket}"
      prefix      = var.lake_prefix
      kms_key_arn = var.t_lake_key
    }
    kafka = {
      brokers         = "b-1:9096"
      msk_enabled     = true
      cluster_arn     = var.t_cluster
      sasl_secret_arn = var.t_secret
      sasl_username   = "imgpipe"
    }
  }

  assert {
    condition     = alltrue([for c in values(local.containers) : c.stopTimeout == 120 && c.user == "10001:10001" && c.readonlyRootFilesystem])
    error_message = "Every container: stopTimeout 120 (longer than the app's drain), non-root user, read-only root."
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.mode["api"].container_definitions)[0].command == ["serve", "--listen", "0.0.0.0:8080"]
    error_message = "The API task runs imgpipe serve --listen 0.0.0.0:8080."
  }
  assert {
    condition = alltrue([
      for m, t in aws_ecs_task_definition.mode :
      contains([for s in jsondecode(t.container_definitions)[0].secrets : s.name], "IMGPIPE_KAFKA__SASL_PASSWORD") == (m != "sweeper") &&
      !contains([for e in jsondecode(t.container_definitions)[0].environment : e.name], "IMGPIPE_KAFKA__SASL_PASSWORD")
    ])
    error_message = "The Kafka password comes from Secrets Manager (secrets), never from plain environment."
  }
  assert {
    condition     = aws_ecs_service.mode["api"].desired_count >= 2 && aws_ecs_service.mode["bridge"].desired_count >= 1 && aws_ecs_service.mode["sweeper"].desired_count == 1
    error_message = "At least two API tasks, at least one bridge, exactly one sweeper."
  }
  assert {
    condition     = aws_lb_listener.https.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06" && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "HTTPS with TLS 1.2+ only; HTTP only redirects."
  }
  assert {
    condition     = aws_lb_target_group.api.health_check[0].path == "/healthz" && aws_lb_target_group.api.port == 8080
    error_message = "The target group checks /healthz on 8080."
  }
  assert {
    condition     = aws_ecr_repository.imgpipe.image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.imgpipe.image_scanning_configuration[0].scan_on_push
    error_message = "ECR: immutable tags, scan on push."
  }
  assert {
    condition     = length(aws_appautoscaling_policy.processor_lag) == 1 && aws_cloudwatch_metric_alarm.processor_lag[0].metric_name == "SumOffsetLag" && aws_cloudwatch_metric_alarm.processor_lag[0].dimensions["Consumer Group"] == "imgpipe-processor"
    error_message = "Processors scale out on the imgpipe-processor group's SumOffsetLag."
  }
  assert {
    condition     = aws_appautoscaling_policy.cpu["processor"].target_tracking_scaling_policy_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ECSServiceAverageCPUUtilization"
    error_message = "Processors track CPU."
  }
  assert {
    condition     = startswith(aws_scheduler_schedule.audit[0].schedule_expression, "cron(") && jsondecode(aws_ecs_task_definition.mode["audit"].container_definitions)[0].command[0] == "audit"
    error_message = "imgpipe audit runs on a daily schedule."
  }
  assert {
    condition     = (var.script_sandbox == "bwrap") == (length(aws_autoscaling_group.processor) == 1 && local.containers["processor"].privileged == true)
    error_message = "script_sandbox = bwrap runs processors on their own EC2 capacity (where bwrap works)."
  }
}

run "compute_without_sandbox" {
  command = apply
  module {
    source = "../../modules/compute"
  }
  variables {
    name               = var.name
    image_tag          = var.image_tag
    vpc_id             = "vpc-1"
    private_subnet_ids = ["subnet-a", "subnet-b", "subnet-c"]
    public_subnet_ids  = ["subnet-d", "subnet-e", "subnet-f"]
    security_group_ids = { alb = "sg-alb", tasks = "sg-tasks" }
    certificate_arn    = var.certificate_arn
    api_keys           = var.api_keys
    script_sandbox     = "none"
    services           = var.services
    log_groups         = { for m in var.t_log_groups : m => "/imgpipe/test/${m}" }
    log_group_arns     = { for m in var.t_log_groups : m => "arn:aws:logs:us-east-1:111122223333:log-group:/imgpipe/test/${m}" }
    waf_log_group_arn  = "arn:aws:logs:us-east-1:111122223333:log-group:aws-waf-logs-test"
    ops_kms_key_arn    = var.t_ops_key
    lake = {
      bucket      = var.lake_bucket
      bucket_arn  = "arn:aws:s3:::${var.lake_bucket}"
      prefix      = var.lake_prefix
      kms_key_arn = var.t_lake_key
    }
    kafka = {
      brokers         = "b-1:9096"
      msk_enabled     = true
      cluster_arn     = var.t_cluster
      sasl_secret_arn = var.t_secret
      sasl_username   = "imgpipe"
    }
  }

  assert {
    condition = (
      length(aws_autoscaling_group.processor) == 0 &&
      toset([for s in aws_ecs_service.mode["processor"].capacity_provider_strategy : s.capacity_provider]) == toset(["FARGATE", "FARGATE_SPOT"]) &&
      local.containers["processor"].privileged == null &&
      contains([for e in local.containers["processor"].environment : "${e.name}=${e.value}"], "IMGPIPE_PROCESSOR__SCRIPT__SANDBOX=none")
    )
    error_message = "script_sandbox = none: processors on Fargate (+ Spot), unprivileged, and the app told so."
  }
}
