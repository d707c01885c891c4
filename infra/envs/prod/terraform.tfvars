# prod: HA NAT, Spot-heavy processors, bigger brokers. Placeholder account
# 444455556666: replace the ARNs, bucket names and key digests with yours.
env                     = "prod"
region                  = "us-east-1"
name                    = "imgpipe-prod"
lake_bucket             = "imgpipe-prod-lake-444455556666"
log_bucket              = "imgpipe-prod-logs-444455556666"
lake_prefix             = ""
glue_database           = "imgpipe"
athena_results_bucket   = "imgpipe-prod-athena-444455556666"
force_destroy           = false
az_count                = 3
single_nat_gateway      = false
image_tag               = "0.1.0"
certificate_arn         = "arn:aws:acm:us-east-1:444455556666:certificate/00000000-0000-0000-0000-000000000000"
alb_deletion_protection = true
script_sandbox          = "bwrap"
alarm_email             = "imgpipe-oncall@example.com"
consumer_lag_threshold  = 5000

api_keys = [
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000011", principal = "analyst", permissions = ["images:write", "images:read"] },
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000012", principal = "kafka-analyst", permissions = ["images:read"] },
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000013", principal = "privacy-officer", permissions = ["images:read", "images:erase"] },
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000014", principal = "analyst", permissions = ["metrics:read"] },
]

services = {
  api       = { cpu = 1024, memory = 2048, desired = 3, min = 3, max = 12 }
  bridge    = { cpu = 1024, memory = 2048, desired = 2, min = 2, max = 2 }
  processor = { cpu = 2048, memory = 4096, desired = 3, min = 2, max = 40 }
  sweeper   = { cpu = 512, memory = 1024, desired = 1, min = 1, max = 1 }
}
processor_instance_types = ["c7g.large", "c6g.large", "m7g.large", "c7g.xlarge"]
claim_check_allow        = ["imgpipe-prod-uploads-444455556666/incoming/"]

msk_broker_instance_type = "kafka.m7g.large"
msk_broker_volume_gb     = 500

lakeformation_admin_arns = ["arn:aws:iam::444455556666:role/terraform-deploy"]
principal_arns = {
  "analyst"         = "arn:aws:iam::444455556666:role/imgpipe-analyst"
  "privacy-officer" = "arn:aws:iam::444455556666:role/imgpipe-privacy-officer"
  "kafka-analyst"   = "arn:aws:iam::444455556666:role/imgpipe-kafka-analyst"
}
quicksight_principal_arn = "arn:aws:quicksight:us-east-1:444455556666:group/default/imgpipe-analysts"
redshift_max_rpu         = 32
