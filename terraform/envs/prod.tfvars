# Prod: three AZs with a NAT gateway each, Multi-AZ database with deletion protection,
# WAF in front of the ALB. Assumes the same AWS account and region as dev, so it reuses
# dev's GitHub OIDC provider and ECR repository (set create_shared_resources = true if
# prod has an account of its own).
# Passed separately (not committed): github_repository, state_bucket, cluster_admin_arns,
# public_hostname, route53_zone_id.
environment             = "prod"
create_shared_resources = false

vpc_cidr           = "10.20.0.0/16"
az_count           = 3
single_nat_gateway = false

node_min_size     = 2
node_max_size     = 6
node_desired_size = 2

db_instance_class         = "db.t4g.small"
db_multi_az               = true
db_deletion_protection    = true
db_keep_automated_backups = true
db_backup_retention_days  = 14

log_retention_days = 90
enable_waf         = true
waf_rate_limit     = 2000
