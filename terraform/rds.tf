locals {
  db_major_version = split(".", var.db_engine_version)[0]
}

# PostgreSQL accepts connections on 5432 from the EKS nodes only (pods share the node
# security group under the VPC CNI; Karpenter's nodes get the same group through its
# discovery tag). No egress rules: the database initiates nothing.
#
# A replacement (a changed description or VPC) creates the new group first, moves the
# instance to it, then deletes the old one. With a fixed name and destroy-first, the delete
# would wait forever on the group the instance still uses.
resource "aws_security_group" "db" {
  #checkov:skip=CKV2_AWS_5:Attached to the RDS instance through module.db (vpc_security_group_ids); checkov does not follow module inputs.
  name_prefix = "${local.name}-db-"
  description = "PostgreSQL for ${local.name}: 5432 from the EKS node security group only"
  vpc_id      = module.vpc.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_nodes" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from EKS nodes"
  referenced_security_group_id = module.eks.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

module "db" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/rds/aws"
  version = "~> 7.0"

  identifier = local.name

  engine               = "postgres"
  engine_version       = var.db_engine_version
  family               = "postgres${local.db_major_version}"
  major_engine_version = local.db_major_version
  instance_class       = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = "titanic"
  username = "titanic"
  port     = 5432

  # Workloads authenticate with IAM, not a password: the app as titanic_app, the migrate Job
  # as titanic_migrator, each with a token its Pod Identity role signs per new connection
  # (rds-db:connect, below). The roles are created in the database by `manage.py dbroles`.
  iam_database_authentication_enabled = true

  # The master user `titanic` is for administrators only. RDS generates its password and keeps
  # it in Secrets Manager (no password in code or state) and rotates it on this schedule; no
  # workload reads it, so a rotation takes nothing down. rotate_immediately = false so an
  # apply never triggers an unplanned rotation.
  manage_master_user_password                            = true                          # pragma: allowlist secret
  manage_master_user_password_rotation                   = true                          # pragma: allowlist secret
  master_user_password_rotate_immediately                = false                         # pragma: allowlist secret
  master_user_password_rotation_automatically_after_days = var.db_password_rotation_days # pragma: allowlist secret

  multi_az               = var.db_multi_az
  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false

  # Automated backups give point-in-time recovery within the retention window.
  backup_retention_period = var.db_backup_retention_days
  backup_window           = "03:00-04:00"
  maintenance_window      = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot   = true

  deletion_protection = var.db_deletion_protection
  skip_final_snapshot = !var.db_deletion_protection
  # Destroying the instance keeps its automated backups (point-in-time recovery) until their
  # retention ends, where the environment asks for it (prod).
  delete_automated_backups = !var.db_keep_automated_backups

  performance_insights_enabled          = true
  performance_insights_retention_period = 7

  enabled_cloudwatch_logs_exports        = ["postgresql", "upgrade"]
  create_cloudwatch_log_group            = true
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  create_db_option_group = false
  parameters = [
    {
      # Refuse unencrypted connections (DATABASE_URL should carry sslmode=require).
      name         = "rds.force_ssl"
      value        = "1"
      apply_method = "pending-reboot"
    }
  ]

  tags = local.tags
}

################################################################################
# IAM database authentication: one Pod Identity role per database user. The app's pods
# (ServiceAccount titanic-api) connect as titanic_app (DML only), the migrate Job
# (ServiceAccount titanic-migrate) as titanic_migrator (owns the schema). Each role may
# connect as its own user on this instance and nothing else.
################################################################################

locals {
  db_users = {
    app = {
      db_user         = "titanic_app"
      service_account = "titanic-api"
    }
    migrate = {
      db_user         = "titanic_migrator"
      service_account = "titanic-migrate"
    }
  }
  # arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user> (RDS User Guide, "Creating and
  # using an IAM policy for IAM database access").
  db_user_arn_prefix = "arn:${local.partition}:rds-db:${var.region}:${local.account_id}:dbuser:${module.db.db_instance_resource_id}"
}

data "aws_iam_policy_document" "db_connect" {
  for_each = local.db_users

  statement {
    sid       = "ConnectAsThisDatabaseUser"
    actions   = ["rds-db:connect"]
    resources = ["${local.db_user_arn_prefix}/${each.value.db_user}"]
  }
}

module "db_user_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  for_each = local.db_users

  name            = "${local.name}-${each.key}"
  use_name_prefix = false
  description     = "${local.app_namespace}/${each.value.service_account} on ${local.name}: connect to PostgreSQL as ${each.value.db_user} (IAM authentication)"

  permissions_boundary_arn = local.permissions_boundary_arn

  attach_custom_policy    = true
  source_policy_documents = [data.aws_iam_policy_document.db_connect[each.key].json]

  associations = {
    (each.key) = {
      cluster_name    = module.eks.cluster_name
      namespace       = local.app_namespace
      service_account = each.value.service_account
    }
  }

  tags = local.tags
}
