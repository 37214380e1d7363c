# One repository per step image (mlops/<kind>) plus the MLflow server image (mlops/mlflow). Tags are immutable (CI tags with the commit sha and the
# DAGs pin digests), images are scanned on push and encrypted with the platform key.
resource "aws_ecr_repository" "step" {
  for_each = toset(concat(var.step_kinds, ["mlflow"]))

  name                 = "mlops/${each.key}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.platform.arn
  }

  tags = merge(local.tags, { "mlops.io/image" = each.key })
}

resource "aws_ecr_lifecycle_policy" "step" {
  for_each = aws_ecr_repository.step

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Drop untagged layers/manifests after 14 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 14
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the 200 most recent commit-tagged images (rollback window)"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 200
        }
        action = { type = "expire" }
      },
    ]
  })
}
