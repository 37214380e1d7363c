# Each step kind's IAM policy, rendered from the lake's one zone definition
# (mlplatform_contract/layout.py, which the step code builds its paths with; tools/lake_zones_json.py
# writes it to plugins/mlplatform_contract/lake_zones.json for Terraform): a kind reads the
# buckets it reads and writes only the zones whose writers name it, under their real key prefixes.
# No provider: tests render it with `terraform apply` offline and evaluate the policies
# (tests/images/steps/test_iam_lake_access.py).
terraform {
  required_version = ">= 1.6"
}

locals {
  layout = jsondecode(file("${path.module}/../../../plugins/mlplatform_contract/lake_zones.json"))

  # kind => { bucket => [key prefixes it writes] }
  writes = {
    for kind in var.step_kinds : kind => {
      for bucket in distinct([for z in values(local.layout.zones) : z.bucket if contains(z.writers, kind)]) :
      bucket => [for z in values(local.layout.zones) : z.prefix if z.bucket == bucket && contains(z.writers, kind)]
    }
  }

  reads = {
    for kind in var.step_kinds : kind => distinct(concat(local.layout.readers[kind], keys(local.writes[kind])))
  }

  policies = {
    for kind in var.step_kinds : kind => {
      Version = "2012-10-17"
      Statement = concat(
        [
          {
            Sid      = "ListReadableBuckets"
            Effect   = "Allow"
            Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
            Resource = [for b in local.reads[kind] : var.bucket_arns[b]]
          },
          {
            Sid      = "ReadObjects"
            Effect   = "Allow"
            Action   = ["s3:GetObject", "s3:GetObjectVersion"]
            Resource = [for b in local.reads[kind] : "${var.bucket_arns[b]}/*"]
          },
        ],
        length(local.writes[kind]) == 0 ? [] : [
          {
            Sid    = "WriteOwnZones"
            Effect = "Allow"
            # Delete: the atomic-commit pattern removes a retry's older attempts in its own zone.
            Action   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
            Resource = flatten([for b, prefixes in local.writes[kind] : [for p in prefixes : "${var.bucket_arns[b]}/${p}*"]])
          },
        ],
        [
          {
            Sid      = "UsePlatformKey"
            Effect   = "Allow"
            Action   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
            Resource = [var.kms_key_arn]
          },
        ],
      )
    }
  }
}
