# imgpipe on AWS. Module by module: network → lake → observability (keys,
# log groups) → kafka → compute (ECS) → catalog → analytics. Data flows:
# clients → ALB → api tasks → S3 lake; producers → MSK → bridge → lake;
# events → processors → lake; sweeper and audit keep the 7-day promise;
# analysts read metadata/ through Lake Formation.

module "network" {
  source             = "../../modules/network"
  name               = var.name
  az_count           = var.az_count
  single_nat_gateway = var.single_nat_gateway
  flow_log_group_arn = module.observability.flow_log_group_arn
}

module "lake" {
  source     = "../../modules/lake"
  name       = var.name
  bucket     = var.lake_bucket
  log_bucket = var.log_bucket
  # Other buckets that deliver access logs here (each under s3/<bucket>/).
  log_sources   = [var.athena_results_bucket]
  force_destroy = var.force_destroy
  web_origins   = var.web_origins
  policy_denies = var.lake_policy_denies
}

module "observability" {
  source                  = "../../modules/observability"
  name                    = var.name
  alarm_email             = var.alarm_email
  consumer_lag_threshold  = var.consumer_lag_threshold
  msk_cluster_name        = module.kafka.cluster_name
  alb_arn_suffix          = module.compute.alb_arn_suffix
  target_group_arn_suffix = module.compute.target_group_arn_suffix
  ecs_cluster_arn         = module.compute.cluster_arn
  audit_task_family       = module.compute.audit_task_family
}

module "kafka" {
  source                   = "../../modules/kafka"
  name                     = var.name
  existing_brokers         = var.existing_brokers
  existing_sasl_secret_arn = var.existing_sasl_secret_arn
  existing_sasl_username   = var.existing_sasl_username
  broker_instance_type     = var.msk_broker_instance_type
  broker_count             = var.az_count
  broker_volume_gb         = var.msk_broker_volume_gb
  subnet_ids               = module.network.private_subnet_ids
  security_group_id        = module.network.security_group_ids["kafka"]
  data_kms_key_arn         = module.lake.kms_key_arn
  ops_kms_key_arn          = module.observability.kms_key_arn
  broker_log_group         = module.observability.msk_log_group
  scram_password           = var.kafka_scram_password
  password_version         = var.kafka_scram_password_version
}

module "compute" {
  source                   = "../../modules/compute"
  name                     = var.name
  image_tag                = var.image_tag
  vpc_id                   = module.network.vpc_id
  private_subnet_ids       = module.network.private_subnet_ids
  public_subnet_ids        = module.network.public_subnet_ids
  security_group_ids       = module.network.security_group_ids
  certificate_arn          = var.certificate_arn
  alb_internal             = var.alb_internal
  alb_deletion_protection  = var.alb_deletion_protection
  alb_access_logs_bucket   = module.lake.log_bucket
  ecr_force_delete         = var.force_destroy
  api_keys                 = var.api_keys
  script_sandbox           = var.script_sandbox
  processor_instance_types = var.processor_instance_types
  services                 = var.services
  claim_check_allow        = var.claim_check_allow
  web_origins              = var.web_origins
  enable_autoscaling       = var.enable_autoscaling
  enable_audit_schedule    = var.enable_audit_schedule
  log_groups               = module.observability.service_log_groups
  log_group_arns           = module.observability.service_log_group_arns
  waf_log_group_arn        = module.observability.waf_log_group_arn
  ops_kms_key_arn          = module.observability.kms_key_arn
  lake = {
    bucket      = module.lake.bucket
    bucket_arn  = module.lake.bucket_arn
    prefix      = var.lake_prefix
    kms_key_arn = module.lake.kms_key_arn
  }
  kafka = {
    brokers         = module.kafka.bootstrap_brokers
    msk_enabled     = module.kafka.msk_enabled
    cluster_arn     = module.kafka.cluster_arn
    sasl_secret_arn = module.kafka.sasl_secret_arn
    sasl_username   = module.kafka.sasl_username
  }
}

module "catalog" {
  source                   = "../../modules/catalog"
  name                     = var.name
  glue_database            = var.glue_database
  lakeformation_admin_arns = var.lakeformation_admin_arns
  bucket                   = module.lake.bucket
  lake_prefix              = var.lake_prefix
  lake_kms_key_arn         = module.lake.kms_key_arn
}

module "analytics" {
  source = "../../modules/analytics"
  name   = var.name
  # From module catalog, so the generated table and grants come after the
  # Lake Formation admins, the database and the registered location.
  catalog_id                 = module.catalog.catalog_id
  glue_database              = module.catalog.glue_database
  bucket                     = module.lake.bucket
  lake_prefix                = var.lake_prefix
  principal_arns             = var.principal_arns
  lake_kms_key_arn           = module.lake.kms_key_arn
  athena_results_bucket      = var.athena_results_bucket
  log_bucket                 = module.lake.log_bucket
  force_destroy              = var.force_destroy
  subnet_ids                 = module.network.private_subnet_ids
  redshift_security_group_id = module.network.security_group_ids["redshift"]
  redshift_max_rpu           = var.redshift_max_rpu
  quicksight_principal_arn   = var.quicksight_principal_arn
  enable_redshift            = var.enable_redshift
  enable_quicksight          = var.enable_quicksight
  enable_analyst_grants      = var.enable_analyst_grants
}
