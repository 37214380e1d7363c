variable "name" {
  description = "Name prefix for every resource (for example mlops-dev)."
  type        = string
}

variable "environment" {
  description = "Environment name: dev or prod."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "azs" {
  description = "Availability zones (three for prod)."
  type        = list(string)
}

variable "kubernetes_version" {
  description = "EKS control-plane version."
  type        = string
  default     = "1.33"
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public EKS API endpoint (office / VPN / CI runners). Empty = private endpoint only."
  type        = list(string)
  default     = []
}

variable "system_instance_types" {
  description = "Instance types of the system node group (Airflow, MLflow, controllers)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU step node group (ingest, validate, evaluate, score, publish)."
  type        = list(string)
  default     = ["m6i.2xlarge", "m6a.2xlarge", "m5.2xlarge"]
}

variable "cpu_capacity_type" {
  description = "SPOT or ON_DEMAND for the CPU step node group."
  type        = string
  default     = "SPOT"

  validation {
    condition     = contains(["SPOT", "ON_DEMAND"], var.cpu_capacity_type)
    error_message = "cpu_capacity_type must be SPOT or ON_DEMAND."
  }
}

variable "cpu_max_size" {
  description = "Maximum size of the CPU step node group."
  type        = number
  default     = 10
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU training node group."
  type        = list(string)
  default     = ["g5.2xlarge"]
}

variable "gpu_max_size" {
  description = "Maximum size of the GPU node group (it scales from zero)."
  type        = number
  default     = 4
}

variable "step_kinds" {
  description = "Step kinds: one image, one ECR repository and one IRSA role each."
  type        = list(string)
  default     = ["ingest", "validate", "train", "evaluate", "score", "publish"]
}

variable "airflow_namespace" {
  description = "Kubernetes namespace of Airflow."
  type        = string
  default     = "airflow"
}

variable "steps_namespace" {
  description = "Kubernetes namespace of the step pods."
  type        = string
  default     = "ml-steps"
}

variable "mlflow_namespace" {
  description = "Kubernetes namespace of the MLflow server (helm/platform values mlflowNamespace)."
  type        = string
  default     = "mlflow"
}

variable "external_secrets_namespace" {
  description = "Kubernetes namespace of External Secrets Operator (helm/platform values registryIdentities.externalSecretsNamespace)."
  type        = string
  default     = "external-secrets"
}

variable "spark_namespace" {
  description = "Kubernetes namespace of Spark executors (helm/platform values sparkExecutors.namespace)."
  type        = string
  default     = "ml-spark"
}

variable "db_instance_class" {
  description = "RDS instance class for the Airflow and MLflow metadata database."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "RDS storage in GiB."
  type        = number
  default     = 50
}

variable "db_multi_az" {
  description = "Run the metadata database Multi-AZ (prod: true)."
  type        = bool
  default     = true
}

variable "db_deletion_protection" {
  description = "Protect the metadata database from deletion (prod: true)."
  type        = bool
  default     = true
}

variable "scores_retention_days" {
  description = "Days before non-current score objects expire."
  type        = number
  default     = 90
}

variable "log_retention_days" {
  description = "Days before task logs expire."
  type        = number
  default     = 30
}

variable "gitlab_url" {
  description = "GitLab instance URL used as the OIDC issuer for CI (no trailing slash)."
  type        = string
  default     = "https://gitlab.com"
}

variable "gitlab_project_path" {
  description = "GitLab project path (group/project) allowed to push images from its default branch."
  type        = string
}

variable "gitlab_default_branch" {
  description = "Only pipelines of this branch may assume the CI image-push role."
  type        = string
  default     = "main"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
