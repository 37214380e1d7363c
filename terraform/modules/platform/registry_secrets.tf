# The MLflow registry's identities in AWS Secrets Manager (docs/registry-access.md). One secret per
# (registry role, customer), named <name>/mlflow/identities/<role>@<customer>; their names follow the
# DAG modules' customers, which Terraform does not read, so the provisioning Job (helm/mlflow, IRSA
# role registry-admin) creates them under this prefix, encrypted with the platform key, and External
# Secrets (IRSA role registry-identities) copies each into its step Secret. No value is ever in code.
# The MLflow admin's credentials and the auth config have their own secret below (its value is set by
# the operator, docs/deploy.md), read by neither role.
locals {
  registry_identities_prefix = "${var.name}/mlflow/identities"
  registry_identities_arn    = "arn:${local.partition}:secretsmanager:${var.region}:${local.account_id}:secret:${local.registry_identities_prefix}/*"
  registry_kms_via_secretsmanager = {
    test     = "StringEquals"
    variable = "kms:ViaService"
    values   = ["secretsmanager.${var.region}.amazonaws.com"]
  }
}

resource "aws_secretsmanager_secret" "mlflow_auth" {
  #checkov:skip=CKV2_AWS_57:The admin password is MLflow's own user (its users database holds the hash); a Lambda rotating the secret would not change it in MLflow. Rotated by the operator with the auth app's update_user_password (docs/registry-access.md).
  name        = "${var.name}/mlflow/auth"
  description = "MLflow basic-auth: basic_auth.ini, admin-username, admin-password, flask-secret-key (set by the operator)."
  kms_key_id  = aws_kms_key.platform.arn
  tags        = local.tags
}

# The provisioning Job: create, read and update the identities' secrets, nothing else.
data "aws_iam_policy_document" "registry_admin" {
  statement {
    sid       = "WriteRegistryIdentities"
    effect    = "Allow"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:TagResource"]
    resources = [local.registry_identities_arn]
  }

  statement {
    sid       = "EncryptRegistryIdentities"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.platform.arn]
    condition {
      test     = local.registry_kms_via_secretsmanager.test
      variable = local.registry_kms_via_secretsmanager.variable
      values   = local.registry_kms_via_secretsmanager.values
    }
  }
}

# External Secrets' store for the steps' namespace: read the identities' secrets, nothing else.
data "aws_iam_policy_document" "registry_identities" {
  statement {
    sid       = "ReadRegistryIdentities"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [local.registry_identities_arn]
  }

  statement {
    sid       = "DecryptRegistryIdentities"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.platform.arn]
    condition {
      test     = local.registry_kms_via_secretsmanager.test
      variable = local.registry_kms_via_secretsmanager.variable
      values   = local.registry_kms_via_secretsmanager.values
    }
  }
}
