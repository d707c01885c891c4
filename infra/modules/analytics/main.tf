# What analysts query with: Athena, Redshift Spectrum, QuickSight — all over
# the Glue table `images` (glue.tf.json) and only through the Lake Formation
# grants of policies/default.toml (lakeformation.tf.json). None of them may
# keep a copy of rows past 7 days: Athena results expire within a day,
# Spectrum reads in place, QuickSight queries directly (no SPICE).

data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
}

# --- Athena ---------------------------------------------------------------------
resource "aws_s3_bucket" "results" {
  #checkov:skip=CKV_AWS_144:Query results live a day; a replica would be one more copy of rows to expire (infra/README.md, "Disaster recovery").
  #checkov:skip=CKV2_AWS_62:Nothing consumes query-result events.
  bucket        = var.athena_results_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.lake_kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_logging" "results" {
  bucket        = aws_s3_bucket.results.id
  target_bucket = var.log_bucket
  target_prefix = "s3/${var.athena_results_bucket}/"
}

# Query results are copies of lake rows, some of them restricted columns:
# gone after athena_results_days (+1 noncurrent day), far inside 7 days.
resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    id     = "expire-results"
    status = "Enabled"
    filter {
      prefix = ""
    }
    expiration {
      days = var.athena_results_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  rule {
    id     = "expired-delete-markers"
    status = "Enabled"
    filter {
      prefix = ""
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
  depends_on = [aws_s3_bucket_versioning.results]
}

resource "aws_s3_bucket_policy" "results" {
  bucket = aws_s3_bucket.results.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.results.arn, "${aws_s3_bucket.results.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.results]
}

resource "aws_athena_workgroup" "this" {
  name = var.name
  configuration {
    # Clients cannot point results elsewhere (an unexpiring bucket) or turn
    # encryption off.
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.bytes_scanned_cutoff_per_query
    result_configuration {
      output_location = "s3://${aws_s3_bucket.results.id}/athena/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = var.lake_kms_key_arn
      }
    }
  }
}

# --- Redshift Serverless + Spectrum ----------------------------------------------
resource "aws_redshiftserverless_namespace" "this" {
  count                 = var.enable_redshift ? 1 : 0
  namespace_name        = var.name
  db_name               = "imgpipe"
  admin_username        = "imgpipe_admin"
  manage_admin_password = true
  kms_key_id            = var.lake_kms_key_arn
  iam_roles             = [aws_iam_role.spectrum.arn]
  default_iam_role_arn  = aws_iam_role.spectrum.arn
}

resource "aws_redshiftserverless_workgroup" "this" {
  count                = var.enable_redshift ? 1 : 0
  namespace_name       = aws_redshiftserverless_namespace.this[0].namespace_name
  workgroup_name       = var.name
  base_capacity        = var.redshift_base_rpu
  max_capacity         = var.redshift_max_rpu
  subnet_ids           = var.subnet_ids
  security_group_ids   = [var.redshift_security_group_id]
  publicly_accessible  = false
  enhanced_vpc_routing = true
}

# Redshift reads the table through this role; Lake Formation decides what
# it sees. All Redshift users share it, so it gets the narrowest view of the
# policy — the analyst's — mirrored from the generated grant so the two
# cannot drift.
resource "aws_iam_role" "spectrum" {
  name = "${var.name}-redshift-spectrum"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"] }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.catalog_id } }
    }]
  })
}

resource "aws_iam_role_policy" "spectrum" {
  name = "catalog-through-lake-formation"
  role = aws_iam_role.spectrum.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Lake Formation vends S3 credentials scoped to the table; Glue
        # only answers what LF grants.
        Sid    = "CatalogRead"
        Effect = "Allow"
        Action = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"]
        Resource = [
          "arn:${local.partition}:glue:*:${var.catalog_id}:catalog",
          "arn:${local.partition}:glue:*:${var.catalog_id}:database/${var.glue_database}",
          "arn:${local.partition}:glue:*:${var.catalog_id}:table/${var.glue_database}/*",
        ]
      },
      {
        # lakeformation:GetDataAccess has no resource-level permissions:
        # AWS requires "*" here; what it returns is still bounded by the
        # LF grants below.
        Sid      = "LakeFormationCredentials"
        Effect   = "Allow"
        Action   = ["lakeformation:GetDataAccess"]
        Resource = "*"
      },
    ]
  })
}

resource "aws_lakeformation_permissions" "spectrum_database" {
  count       = var.enable_analyst_grants ? 1 : 0
  catalog_id  = var.catalog_id
  principal   = aws_iam_role.spectrum.arn
  permissions = ["DESCRIBE"]
  database {
    catalog_id = var.catalog_id
    name       = var.glue_database
  }
}

resource "aws_lakeformation_permissions" "spectrum" {
  count       = var.enable_analyst_grants ? 1 : 0
  catalog_id  = var.catalog_id
  principal   = aws_iam_role.spectrum.arn
  permissions = aws_lakeformation_permissions.analyst[0].permissions
  dynamic "lf_tag_policy" {
    for_each = aws_lakeformation_permissions.analyst[0].lf_tag_policy
    content {
      resource_type = lf_tag_policy.value.resource_type
      dynamic "expression" {
        for_each = lf_tag_policy.value.expression
        content {
          key    = expression.value.key
          values = expression.value.values
        }
      }
    }
  }
}

# Terraform has no resource for CREATE EXTERNAL SCHEMA: the Data API runs it
# once (IF NOT EXISTS makes a re-run harmless), as the namespace's admin.
resource "aws_redshiftdata_statement" "spectrum_schema" {
  count          = var.enable_redshift ? 1 : 0
  workgroup_name = aws_redshiftserverless_workgroup.this[0].workgroup_name
  database       = aws_redshiftserverless_namespace.this[0].db_name
  secret_arn     = aws_redshiftserverless_namespace.this[0].admin_password_secret_arn
  sql            = "CREATE EXTERNAL SCHEMA IF NOT EXISTS ${var.spectrum_schema} FROM DATA CATALOG DATABASE '${var.glue_database}' IAM_ROLE '${aws_iam_role.spectrum.arn}' CATALOG_ID '${var.catalog_id}'"
  depends_on     = [aws_lakeformation_permissions.spectrum_database, aws_lakeformation_permissions.spectrum]
}

# --- QuickSight -------------------------------------------------------------------
resource "aws_quicksight_data_source" "athena" {
  count          = var.enable_quicksight ? 1 : 0
  data_source_id = "${var.name}-athena"
  name           = "${var.name} images (Athena)"
  type           = "ATHENA"
  parameters {
    athena {
      work_group = aws_athena_workgroup.this.name
    }
  }
  permission {
    principal = var.quicksight_principal_arn
    actions = [
      "quicksight:DescribeDataSource",
      "quicksight:DescribeDataSourcePermissions",
      "quicksight:PassDataSource",
      "quicksight:UpdateDataSource",
      "quicksight:DeleteDataSource",
      "quicksight:UpdateDataSourcePermissions",
    ]
  }
}

# DIRECT_QUERY, never SPICE: SPICE imports rows into QuickSight's own store
# and keeps them until the next refresh or deletion — copies that would
# outlive the 7-day promise and escape erasure (DELETE /v1/images/{id}).
# Direct queries go through Athena and Lake Formation every time, so an
# expired or erased row is gone from the dashboards too.
resource "aws_quicksight_data_set" "images" {
  count       = var.enable_quicksight ? 1 : 0
  data_set_id = "${var.name}-images"
  name        = "${var.name} images"
  import_mode = "DIRECT_QUERY"

  physical_table_map {
    physical_table_map_id = "images"
    relational_table {
      data_source_arn = aws_quicksight_data_source.athena[0].arn
      catalog         = "AwsDataCatalog"
      schema          = var.glue_database
      name            = var.glue_table
      # Public columns only: QuickSight's Athena role is granted the
      # analyst view.
      dynamic "input_columns" {
        for_each = {
          id           = "STRING", source = "STRING", received_at = "DATETIME", expires_at = "DATETIME",
          content_type = "STRING", format = "STRING", width = "INTEGER", height = "INTEGER",
          bytes        = "INTEGER", status = "STRING", processing_ms = "INTEGER", script_version = "STRING",
          dt           = "STRING", hr = "STRING",
        }
        content {
          name = input_columns.key
          type = input_columns.value
        }
      }
    }
  }

  permissions {
    principal = var.quicksight_principal_arn
    actions = [
      "quicksight:DescribeDataSet",
      "quicksight:DescribeDataSetPermissions",
      "quicksight:PassDataSet",
      "quicksight:DescribeIngestion",
      "quicksight:ListIngestions",
    ]
  }
}
