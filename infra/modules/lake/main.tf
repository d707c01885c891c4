# The lake bucket and what protects it. The bucket's lifecycle rules live in
# lifecycle.tf.json (generated from retention/src/lifecycle.rs, never edited
# here); everything else about the bucket is here.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_elb_service_account" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

# --- the customer key -------------------------------------------------------
# One customer-managed key for the data itself: lake objects, Athena
# results, MSK at rest, Redshift. Services (S3, Athena, MSK, Redshift) use it
# on the caller's behalf through grants or the caller's own kms: rights, so
# the key policy only delegates to the account's IAM.
resource "aws_kms_key" "lake" {
  description             = "${var.name}: lake data (S3 objects, Athena results, MSK, Redshift)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    # Key policies must name the key as "*" (it means "this key"). Both
    # statements delegate to IAM policies (the account as principal), which
    # grant use of the key to each task role; neither is kms:*, so nothing
    # the key may do is granted that is not named here.
    Statement = [
      {
        Sid       = "AccountAdministersThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action = [
          "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
          "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
          "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
        ]
        Resource = "*"
      },
      {
        Sid       = "AccountUsesThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}-lake"
  target_key_id = aws_kms_key.lake.key_id
}

# --- the lake bucket ----------------------------------------------------------
resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:No cross-region replica on purpose: replication does not carry version deletes, so a replica would keep erased and expired images (infra/README.md, "Disaster recovery").
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: imgpipe announces images on Kafka (ImageReceived), not through S3 notifications.
  #checkov:skip=CKV2_AWS_61:The lifecycle rules are in lifecycle.tf.json next to this file (generated from retention/src/lifecycle.rs); checkov does not link .tf.json resources to this bucket.
  bucket        = var.bucket
  force_destroy = var.force_destroy
}

# Versioning on, because lifecycle.tf.json expires noncurrent versions
# (noncurrent_days = 1) and expired delete markers, and the sweeper and
# erasure delete by version id. A version is never kept past expiry + 1 day
# by S3 itself, and the sweeper purges versions as they expire.
resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    # One data key per bucket and time window instead of one KMS call per
    # object: cuts KMS requests (cost) by orders of magnitude.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Only once the log bucket's policy lets the logging service in: S3 checks
# the target's permissions at this call.
resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${var.bucket}/"
  depends_on    = [aws_s3_bucket_policy.logs]
}

locals {
  lake_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        # StringNotEquals also matches a request without the header.
        Sid       = "DenyPutWithoutSseKms"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.lake.arn}/*"
        Condition = { StringNotEquals = { "s3:x-amz-server-side-encryption" = "aws:kms" } }
      },
      {
        # aws:kms without a key id would encrypt with the AWS-managed aws/s3
        # key, which nobody can rotate or revoke: the request must name the
        # lake key (by ARN, as imgpipe's [lake.s3] sse_kms_key_id does).
        Sid       = "DenyPutWithOtherKey"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.lake.arn}/*"
        Condition = { StringNotEquals = { "s3:x-amz-server-side-encryption-aws-kms-key-id" = aws_kms_key.lake.arn } }
      },
    ]
  }
}

resource "aws_s3_bucket_policy" "lake" {
  count  = var.policy_denies ? 1 : 0
  bucket = aws_s3_bucket.lake.id
  policy = jsonencode(local.lake_policy)
  # A policy PUT races the public access block otherwise.
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

# --- the log bucket -------------------------------------------------------------
# S3 server access logs and ALB access logs can only be delivered to a bucket
# whose default encryption is SSE-S3, hence AES256 here.
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_145:S3 server access logging and ALB access logs only deliver to SSE-S3 (AES256) buckets; SSE-KMS would drop the logs.
  #checkov:skip=CKV_AWS_18:This is the access-log bucket; logging it into itself would log its own log deliveries forever.
  #checkov:skip=CKV_AWS_144:Logs expire within 7 days and name images: a replica would have to be swept too (infra/README.md, "Disaster recovery").
  #checkov:skip=CKV2_AWS_62:Nothing consumes log-delivery events.
  bucket        = var.log_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Logs name image keys (request paths, S3 keys): gone within
# log_retention_days, the noncurrent day included.
resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-logs"
    status = "Enabled"
    filter {
      prefix = ""
    }
    expiration {
      days = var.log_retention_days - 1
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
  depends_on = [aws_s3_bucket_versioning.logs]
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid    = "DenyInsecureTransport"
        Effect = "Deny"
        # The same as "*" to IAM; written out because moto's logging-target
        # check reads Principal as a map (the offline apply).
        Principal = { AWS = "*" }
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      # With BucketOwnerEnforced there are no ACLs: the logging service is
      # let in by policy, each bucket under its own prefix only, and only
      # for deliveries from that bucket in this account.
      [for i, b in concat([var.bucket], var.log_sources) : {
        Sid       = "S3ServerAccessLogs${i}"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/s3/${b}/*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:s3:::${b}" }
        }
      }],
      [{
        # ALB access logs: older regions (us-east-1 among them) deliver as
        # the region's ELB account, newer ones as the log-delivery service.
        Sid    = "AlbAccessLogs"
        Effect = "Allow"
        Principal = {
          AWS     = data.aws_elb_service_account.current.arn
          Service = "logdelivery.elasticloadbalancing.amazonaws.com"
        }
        Action   = "s3:PutObject"
        Resource = "${aws_s3_bucket.logs.arn}/alb/AWSLogs/${local.account_id}/*"
      }],
    )
  })
  depends_on = [aws_s3_bucket_public_access_block.logs]
}

# Direct uploads: the browser PUTs to a presigned URL under uploads/; only
# that, only from the web app's origins. (The presigned URL is the
# credential; CORS only lets the browser send it.)
resource "aws_s3_bucket_cors_configuration" "lake" {
  count  = length(var.web_origins) > 0 ? 1 : 0
  bucket = aws_s3_bucket.lake.id

  cors_rule {
    allowed_methods = ["PUT"]
    allowed_origins = var.web_origins
    allowed_headers = ["content-type", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"]
    expose_headers  = ["ETag"]
    max_age_seconds = 600
  }
}
