# IAM for in-cluster controllers through EKS Pod Identity (the eks-pod-identity-agent
# add-on is installed in eks.tf). Role and policy names start with titanic-<env>- so the
# Terraform apply role's IAM scope (iam.tf) covers them.

################################################################################
# External Secrets Operator (namespace external-secrets, ServiceAccount
# external-secrets): read exactly the one secret the app needs, the Django secret key. The
# database needs none: the app authenticates with IAM (rds.tf).
################################################################################

data "aws_iam_policy_document" "external_secrets" {
  statement {
    sid       = "ReadTheDjangoSecretKey"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_secretsmanager_secret.django_secret_key.arn]
  }
}

module "external_secrets_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name            = "${local.name}-external-secrets"
  use_name_prefix = false
  description     = "External Secrets Operator on ${local.name}: read the Django secret key"

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

################################################################################
# ExternalDNS (namespace external-dns, ServiceAccount external-dns): publishes the Ingress
# host. It may change records only in this environment's zone, and there only the public
# host name and the TXT ownership records ExternalDNS keeps beside it (named
# "<record type>-<host>", e.g. a-titanic.example.com, the TXT registry's naming since v0.18).
# The actions are those of ExternalDNS's AWS tutorial (docs/tutorials/aws.md, "IAM Permissions
# with ABAC"), scoped to the one zone.
################################################################################

data "aws_iam_policy_document" "external_dns" {
  statement {
    sid       = "ChangeThePublicHostRecords"
    actions   = ["route53:ChangeResourceRecordSets"]
    resources = [local.route53_zone_arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
      values   = [var.public_hostname, "*-${var.public_hostname}"]
    }
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "route53:ChangeResourceRecordSetsRecordTypes"
      values   = ["A", "AAAA", "CNAME", "TXT"]
    }
  }

  statement {
    sid       = "ReadTheZone"
    actions   = ["route53:ListResourceRecordSets", "route53:ListTagsForResources"]
    resources = [local.route53_zone_arn]
  }

  statement {
    sid = "ListZones"
    # ListHostedZones has no resource-level permissions.
    actions   = ["route53:ListHostedZones"]
    resources = ["*"]
  }
}

module "external_dns_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name            = "${local.name}-external-dns"
  use_name_prefix = false
  description     = "ExternalDNS on ${local.name}: publish ${var.public_hostname} in its Route 53 zone"

  permissions_boundary_arn = local.permissions_boundary_arn

  attach_custom_policy    = true
  source_policy_documents = [data.aws_iam_policy_document.external_dns.json]

  associations = {
    external_dns = {
      cluster_name    = module.eks.cluster_name
      namespace       = "external-dns"
      service_account = "external-dns"
    }
  }

  tags = local.tags
}
