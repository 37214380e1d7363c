data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  tags = merge(var.tags, {
    "mlops.io/environment"      = var.environment
    "app.kubernetes.io/part-of" = "mlops-platform"
    "managed-by"                = "terraform"
  })

  # The four platform buckets. The logs bucket receives the server access logs of the other three.
  buckets = {
    lake      = "${var.name}-lake-${local.account_id}"
    artifacts = "${var.name}-artifacts-${local.account_id}"
    scores    = "${var.name}-scores-${local.account_id}"
    logs      = "${var.name}-logs-${local.account_id}"
  }

  # Kubernetes service accounts that get an IAM role (IRSA). Names agreed with the control plane.
  step_service_accounts = { for kind in var.step_kinds : kind => "step-${kind}" }
}
