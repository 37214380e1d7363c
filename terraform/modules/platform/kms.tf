# One customer-managed key for the platform's data at rest: S3 buckets, ECR repositories, RDS and its
# Performance Insights. IAM policies grant use of it per role; the key policy only enables IAM and
# administration for the account (explicit actions, no wildcards).
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:Key policy: "*" is this key only; write actions are limited to the account's own IAM principals.
  #checkov:skip=CKV_AWS_356:Key policy: the resource "*" of a key policy means the key itself; it cannot name another resource.
  #checkov:skip=CKV_AWS_109:Key policy: administration is granted to the account root only (the AWS default pattern), which delegates to IAM policies.
  statement {
    sid    = "AccountAdministersKey"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    # Explicit administration actions (no prefix wildcards): everything but using the key for data.
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListKeyRotations",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:RevokeGrant",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    # In a key policy "*" means "this key".
    resources = ["*"]
  }

  statement {
    sid    = "AccountIamPoliciesMayUseKey"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:CreateGrant",
      "kms:DescribeKey",
    ]
    resources = ["*"]
  }
}

resource "aws_kms_key" "platform" {
  description             = "${var.name}: S3, ECR and RDS encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "platform" {
  name          = "alias/${var.name}-platform"
  target_key_id = aws_kms_key.platform.key_id
}
