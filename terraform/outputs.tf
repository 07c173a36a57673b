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
  description = "Role the deploy workflow assumes (GitHub OIDC): ECR push and edit rights in the app namespace."
  value       = module.github_role["deploy"].arn
}

output "terraform_role_arn" {
  description = "Role the terraform workflow assumes to apply (main branch for dev, prod environment for prod)."
  value       = module.github_role["terraform"].arn
}

output "terraform_plan_role_arn" {
  description = "Read-only role the terraform workflow assumes to plan: dev's on pull requests and main, prod's on main only."
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

output "db_master_user_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding {username, password} of the master user (External Secrets source for DATABASE_URL)."
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
