# IAM for in-cluster controllers through EKS Pod Identity (the eks-pod-identity-agent
# add-on is installed in eks.tf). Role and policy names start with titanic-<env>- so the
# Terraform apply role's IAM scope (iam.tf) covers them.

################################################################################
# External Secrets Operator (namespace external-secrets, ServiceAccount
# external-secrets): read exactly the two secrets the app needs.
################################################################################

data "aws_iam_policy_document" "external_secrets" {
  statement {
    sid     = "ReadTitanicSecrets"
    actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [
      module.db.db_instance_master_user_secret_arn,
      aws_secretsmanager_secret.django_secret_key.arn,
    ]
  }
}

module "external_secrets_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name            = "${local.name}-external-secrets"
  use_name_prefix = false
  description     = "External Secrets Operator on ${local.name}: read the RDS master secret and the Django secret key"

  permissions_boundary_arn = local.permissions_boundary_arn

  attach_custom_policy    = true
  source_policy_documents = [data.aws_iam_policy_document.external_secrets.json]

  associations = {
    external_secrets = {
      cluster_name    = module.eks.cluster_name
      namespace       = "external-secrets"
      service_account = "external-secrets"
    }
  }

  tags = local.tags
}

################################################################################
# AWS Load Balancer Controller (kube-system/aws-load-balancer-controller).
################################################################################

module "lb_controller_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name               = "${local.name}-aws-lb-controller"
  use_name_prefix    = false
  policy_name_prefix = "${local.name}-"

  permissions_boundary_arn = local.permissions_boundary_arn

  attach_aws_lb_controller_policy = true

  associations = {
    lb_controller = {
      cluster_name    = module.eks.cluster_name
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
    }
  }

  tags = local.tags
}

################################################################################
# CloudWatch observability add-on (amazon-cloudwatch/cloudwatch-agent). The add-on
# itself creates the association (eks.tf, addons.pod_identity_association).
################################################################################

module "cloudwatch_observability_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name            = "${local.name}-cloudwatch-agent"
  use_name_prefix = false

  permissions_boundary_arn = local.permissions_boundary_arn

  attach_aws_cloudwatch_observability_policy = true

  tags = local.tags
}
