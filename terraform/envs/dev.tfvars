# Dev: smallest footprint. Also owns the account-wide GitHub OIDC provider and the
# titanic-api ECR repository (create_shared_resources).
# Passed separately (not committed): github_repository, state_bucket, cluster_admin_arns,
# public_hostname, route53_zone_id.
environment             = "dev"
create_shared_resources = true

vpc_cidr           = "10.10.0.0/16"
az_count           = 2
single_nat_gateway = true

node_min_size     = 1
node_max_size     = 3
node_desired_size = 1

db_instance_class         = "db.t4g.micro"
db_multi_az               = false
db_deletion_protection    = false
db_keep_automated_backups = false
db_backup_retention_days  = 7

log_retention_days = 14
enable_waf         = false
