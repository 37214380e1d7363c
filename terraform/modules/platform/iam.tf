# IAM roles for service accounts (IRSA). One role per Kubernetes service account group, each with only
# the S3 prefixes and KMS use it needs. MLflow serves artifacts (--serve-artifacts), so train and
# evaluate reach the artifact store through the MLflow server and need no artifacts-bucket access.
locals {
  oidc_provider = module.eks.oidc_provider

  # Access per step kind: buckets it reads, and per bucket the key prefixes it writes (and reads).
  # The monitor step runs in ingest's account: it reads the scores it measures.
  # Publish writes its progress checkpoint and the campaign's arms (treated / control) to the lake.
  step_access = {
    ingest   = { read = ["lake", "scores"], write = { lake = ["*"] } }
    validate = { read = ["lake"], write = { artifacts = ["validation/*"] } }
    train    = { read = ["lake"], write = {} }
    evaluate = { read = ["lake"], write = {} }
    score    = { read = ["lake"], write = { scores = ["*"] } }
    publish  = { read = ["scores"], write = { lake = ["publish/*", "campaign/*"] } }
  }
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

data "aws_iam_policy_document" "step" {
  for_each = local.step_access

  statement {
    sid       = "ListReadableBuckets"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for b in distinct(concat(each.value.read, keys(each.value.write))) : local.bucket_arns[b]]
  }

  statement {
    sid       = "ReadObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for b in distinct(concat(each.value.read, keys(each.value.write))) : "${local.bucket_arns[b]}/*"]
  }

  dynamic "statement" {
    for_each = length(each.value.write) > 0 ? [1] : []
    content {
      sid    = "WriteObjects"
      effect = "Allow"
      # Delete is needed by the atomic-commit pattern (staging prefix removed after the move).
      actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = flatten([
        for b, prefixes in each.value.write : [for p in prefixes : "${local.bucket_arns[b]}/${p}"]
      ])
    }
  }

  statement {
    sid       = "UsePlatformKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.platform.arn]
  }
}

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

  statement {
    sid       = "ReadDatabaseSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_db_instance.metadata.master_user_secret[0].secret_arn]
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
        service_accounts = ["${var.steps_namespace}:${sa}"]
        policy           = data.aws_iam_policy_document.step[kind].json
      }
    },
    {
      mlflow = {
        service_accounts = ["${var.steps_namespace}:mlflow"]
        policy           = data.aws_iam_policy_document.mlflow.json
      }
      airflow = {
        service_accounts = local.airflow_service_accounts
        policy           = data.aws_iam_policy_document.airflow.json
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
