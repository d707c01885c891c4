# dev: small and cheap. Placeholder account 111122223333: replace the ARNs,
# bucket names and key digests with yours.
env                     = "dev"
region                  = "us-east-1"
name                    = "imgpipe-dev"
lake_bucket             = "imgpipe-dev-lake-111122223333"
log_bucket              = "imgpipe-dev-logs-111122223333"
lake_prefix             = ""
glue_database           = "imgpipe"
athena_results_bucket   = "imgpipe-dev-athena-111122223333"
force_destroy           = true
az_count                = 3
single_nat_gateway      = true
image_tag               = "0.1.0"
certificate_arn         = "arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000"
alb_deletion_protection = false
script_sandbox          = "bwrap"

api_keys = [
  # imgpipe keys hash <key>; the keys themselves live with their owners.
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000001", principal = "analyst", permissions = ["images:write", "images:read", "metrics:read"] },
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000002", principal = "privacy-officer", permissions = ["images:read", "images:erase"] },
]

services = {
  api       = { cpu = 512, memory = 1024, desired = 2, min = 2, max = 4 }
  bridge    = { cpu = 512, memory = 1024, desired = 1, min = 1, max = 1 }
  processor = { cpu = 1024, memory = 2048, desired = 1, min = 1, max = 4 }
  sweeper   = { cpu = 256, memory = 512, desired = 1, min = 1, max = 1 }
}
processor_instance_types = ["c7g.large", "c6g.large"]
claim_check_allow        = []

msk_broker_instance_type = "kafka.t3.small"
msk_broker_volume_gb     = 20

lakeformation_admin_arns = ["arn:aws:iam::111122223333:role/terraform-deploy"]
principal_arns = {
  "analyst"         = "arn:aws:iam::111122223333:role/imgpipe-analyst"
  "privacy-officer" = "arn:aws:iam::111122223333:role/imgpipe-privacy-officer"
  "kafka-analyst"   = "arn:aws:iam::111122223333:role/imgpipe-kafka-analyst"
}
quicksight_principal_arn = "arn:aws:quicksight:us-east-1:111122223333:group/default/imgpipe-analysts"
redshift_max_rpu         = 8
