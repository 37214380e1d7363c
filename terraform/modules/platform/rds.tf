# PostgreSQL for the Airflow and MLflow metadata (two databases, two users, one instance). The master
# password is generated and kept in Secrets Manager by RDS (manage_master_user_password): it never
# appears in Terraform state or in a file. docs/deploy.md creates the two application users.
resource "aws_db_parameter_group" "metadata" {
  name   = "${var.name}-metadata-pg16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  tags = local.tags
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "metadata" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is var.db_multi_az: true by default and in prod; dev turns it off for cost.
  #checkov:skip=CKV_AWS_293:Deletion protection is var.db_deletion_protection: true by default and in prod; dev turns it off so the env can be torn down.
  identifier     = "${var.name}-metadata"
  engine         = "postgres"
  engine_version = "16.8"
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_allocated_storage * 4
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.platform.arn

  db_name                       = "airflow"
  username                      = "platform_admin"
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.platform.arn

  iam_database_authentication_enabled = true

  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.metadata.name

  multi_az            = var.db_multi_az
  deletion_protection = var.db_deletion_protection

  backup_retention_period   = 14
  copy_tags_to_snapshot     = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-metadata-final"

  auto_minor_version_upgrade = true

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.platform.arn
  performance_insights_retention_period = 7

  tags = local.tags
}
