terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }

  # Partial configuration: terraform init -backend-config=backend.hcl (bucket, key, region).
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = { "mlops.io/environment" = "dev" }
  }
}

variable "region" {
  description = "AWS region of the dev environment."
  type        = string
  default     = "eu-west-1"
}

variable "gitlab_project_path" {
  description = "GitLab group/project allowed to push images."
  type        = string
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API."
  type        = list(string)
  default     = []
}

module "platform" {
  source = "../../modules/platform"

  name        = "mlops-dev"
  environment = "dev"
  region      = var.region
  azs         = ["${var.region}a", "${var.region}b"]
  vpc_cidr    = "10.40.0.0/16"

  cluster_endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  gitlab_project_path                  = var.gitlab_project_path

  cpu_capacity_type = "SPOT"
  cpu_max_size      = 4
  gpu_max_size      = 1

  db_instance_class      = "db.t4g.medium"
  db_multi_az            = false
  db_deletion_protection = false
  log_retention_days     = 14
}

output "platform" {
  description = "Values for Helm and CI (see docs/deploy.md)."
  value       = module.platform
}
