################################################################################
# GitHub Actions OIDC: the provider (one per account) and the roles CI assumes.
#
# Each role trusts an explicit list of exact token subjects (StringEquals, no wildcards),
# matching the jobs of .github/workflows/deploy.yml and terraform.yml:
#   deploy          dev:  repo:<owner/name>:ref:refs/heads/main  (image build job on main)
#                         repo:<owner/name>:environment:dev      (dev deploy job)
#                   prod: repo:<owner/name>:environment:prod     (prod deploy job, protected)
#   terraform       repo:<owner/name>:environment:terraform-<env> (apply jobs, protected)
#   terraform-plan  repo:<owner/name>:pull_request               (read-only plans)
# so nothing running for dev can act on prod, and a pull request can never apply.
################################################################################

locals {
  github_subject_prefix = "repo:${var.github_repository}"
  github_subjects = {
    deploy = local.is_prod ? ["${local.github_subject_prefix}:environment:prod"] : [
      "${local.github_subject_prefix}:ref:refs/heads/main",
      "${local.github_subject_prefix}:environment:dev",
    ]
    terraform      = ["${local.github_subject_prefix}:environment:terraform-${var.environment}"]
    terraform-plan = ["${local.github_subject_prefix}:pull_request"]
  }

  cluster_arn = "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${local.name}"
}

module "github_oidc_provider" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/iam/aws//modules/iam-oidc-provider"
  version = "~> 6.0"

  count = var.create_shared_resources ? 1 : 0

  url = "https://token.actions.githubusercontent.com"

  tags = local.tags
}

################################################################################
# Deploy role: push the image to the one ECR repository, deploy to the app namespace
# (EKS access entry in eks.tf).
################################################################################

data "aws_iam_policy_document" "deploy" {
  statement {
    sid = "EcrLogin"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPushPullTitanicApi"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImageScanFindings",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:ListImages",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [local.ecr_repository_arn]
  }

  statement {
    sid       = "DescribeCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [local.cluster_arn]
  }
}

################################################################################
# Terraform roles for the terraform workflow.
#   plan  (pull requests): AWS ReadOnlyAccess, plus taking the S3 state lock and
#         reading the Django secret (refreshing a secret version reads it).
#   apply (terraform-<env> environment): PowerUserAccess (everything but IAM and
#         Organizations) plus IAM limited to titanic-* roles and policies, the GitHub
#         OIDC provider and the service-linked roles EKS/RDS/ELB/Auto Scaling need.
################################################################################

data "aws_iam_policy" "read_only" {
  name = "ReadOnlyAccess"
}

data "aws_iam_policy" "power_user" {
  name = "PowerUserAccess"
}

data "aws_iam_policy_document" "terraform_plan" {
  statement {
    sid       = "StateLock"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:${local.partition}:s3:::${var.state_bucket}/*.tflock"]
  }

  statement {
    sid       = "RefreshDjangoSecretVersion"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.django_secret_key.arn]
  }
}


data "aws_iam_policy_document" "terraform_apply_iam" {
  statement {
    sid     = "ManageTitanicIam"
    actions = ["iam:*"]
    resources = [
      "arn:${local.partition}:iam::${local.account_id}:role/titanic-*",
      "arn:${local.partition}:iam::${local.account_id}:policy/titanic-*",
      "arn:${local.partition}:iam::${local.account_id}:oidc-provider/token.actions.githubusercontent.com",
    ]
  }

  statement {
    sid       = "ReadAwsManagedPolicies"
    actions   = ["iam:GetPolicy", "iam:GetPolicyVersion"]
    resources = ["arn:${local.partition}:iam::aws:policy/*"]
  }

  statement {
    sid = "ListIam"
    # List calls have no resource-level permissions.
    actions   = ["iam:ListOpenIDConnectProviders", "iam:ListPolicies", "iam:ListRoles"]
    resources = ["*"]
  }

  statement {
    sid       = "ServiceLinkedRoles"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values = [
        "autoscaling.amazonaws.com",
        "eks.amazonaws.com",
        "eks-nodegroup.amazonaws.com",
        "elasticloadbalancing.amazonaws.com",
        "rds.amazonaws.com",
        "spot.amazonaws.com",
      ]
    }
  }
}

################################################################################
# The three roles, one module call each.
################################################################################

locals {
  github_roles = {
    deploy = {
      description = "GitHub Actions deploy for ${local.name}: push titanic-api images, deploy to ${local.app_namespace}"
      subjects    = local.github_subjects.deploy
      policies    = {}
      inline      = data.aws_iam_policy_document.deploy.json
    }
    terraform-plan = {
      description = "GitHub Actions terraform plan for ${local.name} (read-only)"
      subjects    = local.github_subjects.terraform-plan
      policies    = { ReadOnlyAccess = data.aws_iam_policy.read_only.arn }
      inline      = data.aws_iam_policy_document.terraform_plan.json
    }
    terraform = {
      description = "GitHub Actions terraform apply for ${local.name}"
      subjects    = local.github_subjects.terraform
      policies    = { PowerUserAccess = data.aws_iam_policy.power_user.arn }
      inline      = data.aws_iam_policy_document.terraform_apply_iam.json
    }
  }
}

module "github_role" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/iam/aws//modules/iam-role"
  version = "~> 6.0"

  for_each = local.github_roles

  name            = "${local.name}-${each.key}"
  use_name_prefix = false
  description     = each.value.description

  # StringEquals on the token's sub claim: exact subjects, no wildcards.
  enable_github_oidc = true
  oidc_subjects      = each.value.subjects

  policies = each.value.policies

  create_inline_policy           = true
  source_inline_policy_documents = [each.value.inline]

  tags = local.tags

  depends_on = [module.github_oidc_provider]
}
