module "vpc" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact released version (registry versions are immutable); .terraform.lock.hcl pins providers.
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.21.0"

  name = var.name
  cidr = var.vpc_cidr
  azs  = var.azs

  # /20 private subnets per AZ for pods (VPC CNI gives each pod a VPC address), /24 public for load balancers,
  # /24 database subnets for RDS.
  private_subnets  = [for i, _ in var.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets   = [for i, _ in var.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  database_subnets = [for i, _ in var.azs : cidrsubnet(var.vpc_cidr, 8, 56 + i)]

  create_database_subnet_group = true

  enable_nat_gateway = true
  # dev: one NAT gateway; prod: one per AZ so an AZ outage does not cut egress.
  single_nat_gateway     = var.environment != "prod"
  one_nat_gateway_per_az = var.environment == "prod"

  enable_dns_hostnames = true
  enable_dns_support   = true

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = 365

  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }

  tags = local.tags
}

# Gateway endpoint: step pods reach S3 (lake, scores) without NAT traffic charges.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = module.vpc.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = module.vpc.private_route_table_ids
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}
