# Everything the Helm values and the CI variables need (docs/deploy.md maps each output to its place).
output "region" {
  description = "AWS region."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.eks.cluster_endpoint
}

output "oidc_provider_arn" {
  description = "IRSA OIDC provider of the cluster."
  value       = module.eks.oidc_provider_arn
}

output "ecr_registry" {
  description = "Registry host of the step images (CI variable ECR_REGISTRY)."
  value       = "${local.account_id}.dkr.ecr.${var.region}.amazonaws.com"
}

output "ecr_repositories" {
  description = "Image (step kind or mlflow) => ECR repository URL."
  value       = { for k, r in aws_ecr_repository.step : k => r.repository_url }
}

output "buckets" {
  description = "Bucket role => bucket name (lake, artifacts, scores, logs)."
  value       = local.bucket_names
}

output "kms_key_arn" {
  description = "Platform KMS key."
  value       = aws_kms_key.platform.arn
}

output "step_role_arns" {
  description = "Step kind => IAM role ARN (helm/platform values: serviceAccounts.<kind>.roleArn)."
  value       = { for kind in var.step_kinds : kind => aws_iam_role.irsa["step-${kind}"].arn }
}

output "mlflow_role_arn" {
  description = "IAM role of the MLflow server service account (helm/mlflow values: serviceAccount.roleArn)."
  value       = aws_iam_role.irsa["mlflow"].arn
}

output "airflow_role_arn" {
  description = "IAM role of the Airflow service accounts (helm/airflow values: IRSA annotations)."
  value       = aws_iam_role.irsa["airflow"].arn
}

output "ci_role_arn" {
  description = "Role GitLab CI assumes with its OIDC token (CI variable AWS_ROLE_ARN)."
  value       = aws_iam_role.ci.arn
}

output "db_endpoint" {
  description = "Metadata database host:port."
  value       = aws_db_instance.metadata.endpoint
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret holding the generated master password."
  value       = aws_db_instance.metadata.master_user_secret[0].secret_arn
}

output "cluster_autoscaler_role_arn" {
  description = "IAM role for kube-system:cluster-autoscaler (docs/deploy.md, cluster add-ons)."
  value       = aws_iam_role.cluster_autoscaler.arn
}

output "registry_admin_role_arn" {
  description = "IAM role of the registry provisioning Job (helm/mlflow values: provisioning.serviceAccount.roleArn)."
  value       = aws_iam_role.irsa["registry-admin"].arn
}

output "registry_identities_role_arn" {
  description = "IAM role of External Secrets' registry store (helm/platform values: registryIdentities.roleArn)."
  value       = aws_iam_role.irsa["registry-identities"].arn
}

output "registry_identities_prefix" {
  description = "Secrets Manager name prefix of the registry identities (helm/mlflow provisioning.secretsPrefix, helm/platform registryIdentities.secretsPrefix)."
  value       = local.registry_identities_prefix
}

output "mlflow_auth_secret_arn" {
  description = "Secrets Manager secret for MLflow's auth Secret mlflow-auth (value set by the operator)."
  value       = aws_secretsmanager_secret.mlflow_auth.arn
}
