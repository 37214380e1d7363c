module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact released version (registry versions are immutable); .terraform.lock.hcl pins providers.
  source  = "terraform-aws-modules/eks/aws"
  version = "20.37.2"

  cluster_name    = var.name
  cluster_version = var.kubernetes_version

  vpc_id                   = module.vpc.vpc_id
  subnet_ids               = module.vpc.private_subnets
  control_plane_subnet_ids = module.vpc.private_subnets

  cluster_endpoint_private_access      = true
  cluster_endpoint_public_access       = length(var.cluster_endpoint_public_access_cidrs) > 0
  cluster_endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs

  # IRSA: every workload role below trusts this cluster's OIDC provider.
  enable_irsa                              = true
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true

  cluster_enabled_log_types              = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = 90

  cluster_addons = {
    coredns    = {}
    kube-proxy = {}
    vpc-cni = {
      before_compute = true
      # The platform chart's NetworkPolicies are enforced by the VPC CNI's network-policy agent.
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
  }

  eks_managed_node_group_defaults = {
    ami_type = "AL2023_x86_64_STANDARD"
    # IMDSv2 only, hop limit 1: pods cannot borrow the node role; they use IRSA.
    metadata_options = {
      http_endpoint               = "enabled"
      http_tokens                 = "required"
      http_put_response_hop_limit = 1
    }
    block_device_mappings = {
      xvda = {
        device_name = "/dev/xvda"
        ebs = {
          volume_size           = 100
          volume_type           = "gp3"
          encrypted             = true
          kms_key_id            = aws_kms_key.platform.arn
          delete_on_termination = true
        }
      }
    }
  }

  eks_managed_node_groups = {
    # Airflow, MLflow and cluster controllers. Always on, on-demand.
    system = {
      instance_types = var.system_instance_types
      capacity_type  = "ON_DEMAND"
      min_size       = 2
      max_size       = 4
      desired_size   = 2
      labels = {
        "mlops.io/node-pool" = "system"
      }
    }

    # CPU steps: ingest, validate, evaluate, score, publish. Spot allowed; steps that must not be
    # interrupted select eks.amazonaws.com/capacityType=ON_DEMAND and land on the system group.
    cpu = {
      instance_types = var.cpu_instance_types
      capacity_type  = var.cpu_capacity_type
      min_size       = 0
      max_size       = var.cpu_max_size
      desired_size   = 1
      labels = {
        "mlops.io/node-pool" = "cpu"
      }
      tags = {
        "k8s.io/cluster-autoscaler/enabled"                                = "true"
        "k8s.io/cluster-autoscaler/${var.name}"                            = "owned"
        "k8s.io/cluster-autoscaler/node-template/label/mlops.io/node-pool" = "cpu"
      }
    }

    # GPU training (Horovod/TensorFlow). Scales from zero; tainted so only pods that tolerate
    # nvidia.com/gpu (the train step) land here. The NVIDIA AMI carries driver and container toolkit.
    gpu = {
      ami_type       = "AL2023_x86_64_NVIDIA"
      instance_types = var.gpu_instance_types
      capacity_type  = "ON_DEMAND"
      min_size       = 0
      max_size       = var.gpu_max_size
      desired_size   = 0
      labels = {
        "mlops.io/node-pool"     = "gpu"
        "nvidia.com/gpu.present" = "true"
      }
      taints = {
        gpu = {
          key    = "nvidia.com/gpu"
          value  = "true"
          effect = "NO_SCHEDULE"
        }
      }
      # Scale from zero: the cluster autoscaler reads labels, taints and GPU capacity of an empty
      # group from these tags (and from the managed node group API).
      tags = {
        "k8s.io/cluster-autoscaler/enabled"                                = "true"
        "k8s.io/cluster-autoscaler/${var.name}"                            = "owned"
        "k8s.io/cluster-autoscaler/node-template/label/mlops.io/node-pool" = "gpu"
        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"     = "true:NoSchedule"
        "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu" = "1"
      }
    }
  }

  tags = local.tags
}

# Nodes may reach the metadata database; nothing else may.
resource "aws_security_group" "db" {
  name        = "${var.name}-metadata-db"
  description = "PostgreSQL for Airflow and MLflow metadata: reachable from EKS nodes only"
  vpc_id      = module.vpc.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_nodes" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from EKS nodes (Airflow, MLflow pods)"
  referenced_security_group_id = module.eks.node_security_group_id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}
