# Platform buckets (modules/bucket): lake (curated step inputs/outputs), artifacts (MLflow artifacts),
# scores (batch predictions handed to publish), logs (Airflow remote task logs).
module "bucket_lake" {
  source = "../bucket"

  name                = local.buckets.lake
  purpose             = "lake"
  kms_key_arn         = aws_kms_key.platform.arn
  access_log_bucket   = aws_s3_bucket.access_logs.id
  current_expiry_days = null
  tags                = local.tags
}

module "bucket_artifacts" {
  source = "../bucket"

  name                = local.buckets.artifacts
  purpose             = "artifacts"
  kms_key_arn         = aws_kms_key.platform.arn
  access_log_bucket   = aws_s3_bucket.access_logs.id
  current_expiry_days = null
  tags                = local.tags
}

module "bucket_scores" {
  source = "../bucket"

  name                   = local.buckets.scores
  purpose                = "scores"
  kms_key_arn            = aws_kms_key.platform.arn
  access_log_bucket      = aws_s3_bucket.access_logs.id
  current_expiry_days    = 365
  noncurrent_expiry_days = var.scores_retention_days
  tags                   = local.tags
}

module "bucket_logs" {
  source = "../bucket"

  name                = local.buckets.logs
  purpose             = "logs"
  kms_key_arn         = aws_kms_key.platform.arn
  access_log_bucket   = aws_s3_bucket.access_logs.id
  current_expiry_days = var.log_retention_days
  tags                = local.tags
}

locals {
  bucket_arns = {
    lake      = module.bucket_lake.arn
    artifacts = module.bucket_artifacts.arn
    scores    = module.bucket_scores.arn
    logs      = module.bucket_logs.arn
  }
  bucket_names = {
    lake      = module.bucket_lake.id
    artifacts = module.bucket_artifacts.id
    scores    = module.bucket_scores.id
    logs      = module.bucket_logs.id
  }
}

# Target of the S3 server access logs of the platform buckets. AWS does not deliver server access logs
# to SSE-KMS buckets, so this one bucket uses SSE-S3 (AES256).
resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_145:S3 server access log delivery requires SSE-S3 on the target bucket; SSE-KMS is not supported there.
  #checkov:skip=CKV_AWS_18:This is the access-log target bucket itself; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are audit data kept in-region; no replication requirement.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications for access logs.
  bucket        = "${var.name}-access-logs-${local.account_id}"
  force_destroy = false
  tags          = merge(local.tags, { "mlops.io/bucket" = "access-logs" })
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid     = "S3ServerAccessLogsDelivery"
    effect  = "Allow"
    actions = ["s3:PutObject"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 365
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}
