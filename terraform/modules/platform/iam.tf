# IAM roles for service accounts (IRSA). One role per Kubernetes service account group, each with only
# the S3 prefixes and KMS use it needs. MLflow serves artifacts (--serve-artifacts), so train and
# evaluate reach the artifact store through the MLflow server and need no artifacts-bucket access.
locals {
  oidc_provider = module.eks.oidc_provider
}

# Each step kind's policy: the zones it writes come from the lake's one zone definition
# (plugins/mlplatform_contract/layout.py, written to lake_zones.json beside it for Terraform). The
# monitor step runs in ingest's account; a model's own steps in the kind they run in (score by default).
module "step_policy" {
  source = "../step_policy"

  step_kinds  = var.step_kinds
  bucket_arns = local.bucket_arns
  kms_key_arn = aws_kms_key.platform.arn
}

data "aws_iam_policy_document" "irsa_trust" {
  for_each = local.irsa_roles

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:sub"
      values   = [for sa in each.value.service_accounts : "system:serviceaccount:${sa}"]
    }
  }
}

# MLflow: its artifacts only. No Secrets Manager: its database password comes from the Kubernetes
# Secret mlflow-db (helm/mlflow), and the RDS master password is in no workload role.
data "aws_iam_policy_document" "mlflow" {
  statement {
    sid       = "ListArtifacts"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arns["artifacts"]]
  }

  statement {
    sid       = "ReadWriteMlflowArtifacts"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arns["artifacts"]}/mlflow/*"]
  }

  statement {
    sid       = "UsePlatformKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.platform.arn]
  }
}

data "aws_iam_policy_document" "airflow" {
  statement {
    sid       = "ListTaskLogs"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arns["logs"]]
  }

  statement {
    sid       = "ReadWriteTaskLogs"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.bucket_arns["logs"]}/airflow/*"]
  }

  statement {
    sid       = "UsePlatformKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.platform.arn]
  }
}

locals {
  # Airflow components share one role: all of them read task logs, workers write them.
  airflow_service_accounts = [
    for c in ["worker", "scheduler", "triggerer", "dag-processor", "api-server"] :
    "${var.airflow_namespace}:airflow-${c}"
  ]

  irsa_roles = merge(
    {
      for kind, sa in local.step_service_accounts : "step-${kind}" => {
        # Spark executors (their own namespace and account) act for ingest: same lake zones.
        service_accounts = concat(
          ["${var.steps_namespace}:${sa}"],
          kind == "ingest" ? ["${var.spark_namespace}:spark-executor"] : [],
        )
        policy = module.step_policy.policies[kind]
      }
    },
    {
      mlflow = {
        service_accounts = ["${var.mlflow_namespace}:mlflow"]
        policy           = data.aws_iam_policy_document.mlflow.json
      }
      airflow = {
        service_accounts = local.airflow_service_accounts
        policy           = data.aws_iam_policy_document.airflow.json
      }
      # the registry's provisioning Job (helm/mlflow) and External Secrets' store (helm/platform)
      registry-admin = {
        service_accounts = ["${var.mlflow_namespace}:mlflow-registry-admin"]
        policy           = data.aws_iam_policy_document.registry_admin.json
      }
      registry-identities = {
        service_accounts = ["${var.external_secrets_namespace}:registry-identities-reader"]
        policy           = data.aws_iam_policy_document.registry_identities.json
      }
    },
  )
}

resource "aws_iam_role" "irsa" {
  for_each = local.irsa_roles

  name                 = "${var.name}-${each.key}"
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust[each.key].json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy" "irsa" {
  for_each = local.irsa_roles

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.irsa[each.key].id
  policy = each.value.policy
}

# Cluster autoscaler (kube-system:cluster-autoscaler): scales the cpu and gpu node groups, the gpu one
# from zero. Describe calls cannot be scoped by resource; changes are limited to this cluster's
# managed node group ASGs and, by tag condition, to groups tagged as owned by this cluster.
data "aws_iam_policy_document" "cluster_autoscaler" {
  statement {
    sid    = "DescribeScalingInputs"
    effect = "Allow"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeOwnNodeGroups"
    effect    = "Allow"
    actions   = ["eks:DescribeNodegroup"]
    resources = ["arn:${local.partition}:eks:${var.region}:${local.account_id}:nodegroup/${var.name}/*/*"]
  }

  statement {
    sid    = "ScaleOwnNodeGroups"
    effect = "Allow"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["arn:${local.partition}:autoscaling:${var.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/eks-*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}"
      values   = ["owned"]
    }
  }
}

data "aws_iam_policy_document" "cluster_autoscaler_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_provider}:sub"
      values   = ["system:serviceaccount:kube-system:cluster-autoscaler"]
    }
  }
}

resource "aws_iam_role" "cluster_autoscaler" {
  name                 = "${var.name}-cluster-autoscaler"
  assume_role_policy   = data.aws_iam_policy_document.cluster_autoscaler_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "${var.name}-cluster-autoscaler"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}
