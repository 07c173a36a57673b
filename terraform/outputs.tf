################################################################################
# General / network
################################################################################

output "region" {
  description = "AWS region of this environment (CI variable AWS_REGION)."
  value       = var.region
}

output "vpc_id" {
  description = "VPC id (Helm value vpcId of the AWS Load Balancer Controller; pods cannot read it from IMDS, whose hop limit is 1)."
  value       = module.vpc.vpc_id
}

output "vpc_cidr" {
  description = "VPC CIDR block (Kustomize network policy: ingress from the ALB, which lives in the VPC)."
  value       = module.vpc.vpc_cidr_block
}

output "database_subnets_cidr_blocks" {
  description = "CIDR blocks of the database subnets (Kustomize network policy: egress to PostgreSQL on 5432)."
  value       = module.vpc.database_subnets_cidr_blocks
}

################################################################################
# ECR / EKS
################################################################################

output "ecr_repository_url" {
  description = "URL of the titanic-api ECR repository (CI pushes <url>:<commit sha>; kustomize edit set image)."
  value       = local.ecr_repository_url
}

output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <cluster_name>; Helm value settings.clusterName of Karpenter; the karpenter.sh/discovery tag value of the private subnets and the node security group)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API server endpoint."
  value       = module.eks.cluster_endpoint
}

output "kubernetes_version" {
  description = "Kubernetes version of the cluster (the version manifests are validated against)."
  value       = module.eks.cluster_version
}

################################################################################
# IAM roles
################################################################################

output "deploy_role_arn" {
  description = "Role the deploy job of this environment assumes (GitHub OIDC, environment:<env>): edit rights in the app namespace, no ECR. Variable DEPLOY_ROLE_ARN of the GitHub environment <env>."
  value       = module.github_role["deploy"].arn
}

output "image_push_role_arn" {
  description = "Role the image builds assume (GitHub OIDC: main, and tags through the release environment): push to titanic-api, no cluster access. Repository variable IMAGE_PUSH_ROLE_ARN. Null where this environment does not own the repository."
  value       = try(module.github_role["image-push"].arn, null)
}

output "terraform_role_arn" {
  description = "Role the terraform workflow assumes to apply (GitHub environment terraform-<env>). Variable TERRAFORM_ROLE_ARN of that environment."
  value       = module.github_role["terraform"].arn
}

output "terraform_plan_role_arn" {
  description = "Read-only role the terraform workflow assumes to plan: dev's on pull requests and main, prod's on main only. Repository variable TERRAFORM_PLAN_ROLE_ARN_<ENV>."
  value       = module.github_role["terraform-plan"].arn
}

output "external_secrets_role_arn" {
  description = "Pod Identity role of External Secrets (external-secrets/external-secrets); already associated, nothing to annotate."
  value       = module.external_secrets_pod_identity.iam_role_arn
}

output "lb_controller_role_arn" {
  description = "Pod Identity role of the AWS Load Balancer Controller (kube-system/aws-load-balancer-controller); already associated."
  value       = module.lb_controller_pod_identity.iam_role_arn
}

output "external_dns_role_arn" {
  description = "Pod Identity role of ExternalDNS (external-dns/external-dns): record changes for public_hostname in route53_zone_id only; already associated."
  value       = module.external_dns_pod_identity.iam_role_arn
}

output "app_role_arn" {
  description = "Pod Identity role of the app (<app namespace>/titanic-api): rds-db:connect as titanic_app on this instance; already associated."
  value       = module.db_user_pod_identity["app"].iam_role_arn
}

output "migrate_role_arn" {
  description = "Pod Identity role of the migrate Job (<app namespace>/titanic-migrate): rds-db:connect as titanic_migrator on this instance; already associated."
  value       = module.db_user_pod_identity["migrate"].iam_role_arn
}

################################################################################
# Database and secrets
################################################################################

output "db_endpoint" {
  description = "PostgreSQL endpoint as host:port."
  value       = module.db.db_instance_endpoint
}

output "db_address" {
  description = "PostgreSQL host name (the host part of DATABASE_URL)."
  value       = module.db.db_instance_address
}

output "db_port" {
  description = "PostgreSQL port."
  value       = module.db.db_instance_port
}

output "db_name" {
  description = "Database name (the path of DATABASE_URL)."
  value       = module.db.db_instance_name
}

output "db_resource_id" {
  description = "DbiResourceId of the instance: the IAM database users are dbuser:<db_resource_id>/<user> in rds-db ARNs (rds-db:connect)."
  value       = module.db.db_instance_resource_id
}

output "db_master_user_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding {username, password} of the master user: for administrators (manage.py dbroles), read by no workload."
  value       = module.db.db_instance_master_user_secret_arn
}

output "django_secret_key_secret_arn" {
  description = "ARN of the Secrets Manager secret titanic/<env>/django-secret-key (plain string; External Secrets source for DJANGO_SECRET_KEY)."
  value       = aws_secretsmanager_secret.django_secret_key.arn
}

output "django_secret_key_secret_name" {
  description = "Name of the Django secret-key secret (the remoteRef key in the ExternalSecret)."
  value       = aws_secretsmanager_secret.django_secret_key.name
}

################################################################################
# Edge
################################################################################

output "public_hostname" {
  description = "The public host name of the app (Ingress host, ExternalDNS domain filter, the smoke check's Host/SNI)."
  value       = var.public_hostname
}

output "acm_certificate_arn" {
  description = "ARN of the issued ACM certificate for public_hostname (ingress annotation alb.ingress.kubernetes.io/certificate-arn, or found by host name)."
  value       = aws_acm_certificate_validation.public.certificate_arn
}

output "waf_web_acl_arn" {
  description = "ARN of the WAF web ACL for the ALB (alb.ingress.kubernetes.io/wafv2-acl-arn), or null when enable_waf is false."
  value       = try(aws_wafv2_web_acl.alb[0].arn, null)
}

################################################################################
# Karpenter (Helm values of the controller and the EC2NodeClass in kustomize/)
################################################################################

output "karpenter_node_iam_role_name" {
  description = "IAM role of the nodes Karpenter launches (EC2NodeClass spec.role); its access entry (EC2_LINUX) already exists."
  value       = module.karpenter.node_iam_role_name
}

output "karpenter_queue_name" {
  description = "SQS queue of Spot interruption and rebalance events (Helm value settings.interruptionQueue of the controller, which runs as kube-system/karpenter)."
  value       = module.karpenter.queue_name
}
