# The catalog side of the lake: Lake Formation's settings, the Glue database
# and the metadata/ location. A module of its own because the generated
# files of module analytics (glue.tf.json, lakeformation.tf.json) refer to
# var.catalog_id and var.glue_database only: passing those in from this
# module's outputs is what makes Terraform create the admins, the database
# and the location before the generated table and grants.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition       = data.aws_partition.current.partition
  metadata_prefix = "${var.lake_prefix}metadata/"
}

# No create_database_default_permissions / create_table_default_permissions
# blocks: the provider then sends empty lists, which removes the default
# IAM_ALLOWED_PRINCIPALS grant. With it, any IAM principal allowed
# glue:GetTable and s3:GetObject would read every column; without it, only
# the LF grants of policies/default.toml decide.
resource "aws_lakeformation_data_lake_settings" "this" {
  catalog_id = data.aws_caller_identity.current.account_id
  admins     = var.lakeformation_admin_arns
}

resource "aws_glue_catalog_database" "this" {
  name        = var.glue_database
  catalog_id  = data.aws_caller_identity.current.account_id
  description = "imgpipe: image metadata over s3://${var.bucket}/${local.metadata_prefix} (7-day retention)"
  # Created after the settings so it never gets the IAM_ALLOWED_PRINCIPALS
  # default.
  depends_on = [aws_lakeformation_data_lake_settings.this]
}

# Lake Formation reads metadata/ — and only it — with its own role and
# hands scoped credentials to Athena, Redshift Spectrum and QuickSight.
resource "aws_lakeformation_resource" "metadata" {
  arn                     = "arn:${local.partition}:s3:::${var.bucket}/${local.metadata_prefix}"
  role_arn                = aws_iam_role.location.arn
  use_service_linked_role = false
  depends_on              = [aws_lakeformation_data_lake_settings.this]
}

resource "aws_iam_role" "location" {
  name = "${var.name}-lakeformation-metadata"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lakeformation.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "location" {
  name = "read-metadata"
  role = aws_iam_role.location.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadMetadata"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = ["arn:${local.partition}:s3:::${var.bucket}/${local.metadata_prefix}*"]
      },
      {
        Sid       = "ListMetadata"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = ["arn:${local.partition}:s3:::${var.bucket}"]
        Condition = { StringLike = { "s3:prefix" = ["${local.metadata_prefix}*"] } }
      },
      {
        Sid      = "DecryptLake"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.lake_kms_key_arn]
      },
    ]
  })
}
