################################################################################
# GitHub Actions OIDC: the provider (one per account) and the roles CI assumes.
#
# Each role trusts an explicit list of exact token subjects (StringEquals, no wildcards),
# matching the jobs of .github/workflows/deploy.yml and terraform.yml:
#   deploy          dev:  repo:<owner/name>:ref:refs/heads/main  (image build job on main)
#                         repo:<owner/name>:environment:dev      (dev deploy job)
#                         repo:<owner/name>:environment:release  (image job of a vX.Y.Z tag)
#                   prod: repo:<owner/name>:environment:prod     (prod deploy job, protected)
#   terraform       repo:<owner/name>:environment:terraform-<env> (apply jobs, protected)
#   terraform-plan  dev:  repo:<owner/name>:pull_request         (plans of pull requests)
#                         repo:<owner/name>:ref:refs/heads/main  (plan before the apply)
#                   prod: repo:<owner/name>:ref:refs/heads/main  (only)
# so nothing running for dev can act on prod, and a pull request can never apply.
#
# Prod is never planned for a pull request: a plan refreshes the write-only Django secret
# version, which reads the secret (GetSecretValue), and a pull request's branch can change
# the workflow to print whatever its role can read. Prod is planned on main, after review,
# before the terraform-prod approval.
################################################################################

locals {
  github_subject_prefix = "repo:${var.github_repository}"
  github_main           = "${local.github_subject_prefix}:ref:refs/heads/main"
  github_subjects = {
    deploy = local.is_prod ? ["${local.github_subject_prefix}:environment:prod"] : [
      local.github_main,
      "${local.github_subject_prefix}:environment:dev",
      "${local.github_subject_prefix}:environment:release", # vX.Y.Z tag builds (push only)
    ]
    terraform      = ["${local.github_subject_prefix}:environment:terraform-${var.environment}"]
    terraform-plan = local.is_prod ? [local.github_main] : ["${local.github_subject_prefix}:pull_request", local.github_main]
  }

  cluster_arn = "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${local.name}"
  iam_arn     = "arn:${local.partition}:iam::${local.account_id}"
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
#   plan  (dev: pull requests and main; prod: main only): AWS ReadOnlyAccess, plus
#         taking the S3 state lock and reading this environment's Django secret
#         (refreshing a secret version reads it).
#   apply (terraform-<env> environment): PowerUserAccess (everything but IAM and
#         Organizations) plus IAM limited to titanic-<env>-* roles and policies, the
#         GitHub OIDC provider and the service-linked roles EKS/RDS/ELB/Auto Scaling need,
#         under the guardrails below.
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


data "aws_iam_policy_document" "terraform_apply" {
  source_policy_documents = [
    data.aws_iam_policy_document.terraform_apply_iam.json,
    data.aws_iam_policy_document.iam_guardrails.json,
  ]
}

data "aws_iam_policy_document" "terraform_apply_iam" {
  statement {
    sid = "ManageTitanicRoles"
    actions = [
      "iam:AttachRolePolicy",
      "iam:CreateRole",
      "iam:DeleteRole",
      "iam:DeleteRolePolicy",
      "iam:DetachRolePolicy",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
      "iam:ListRolePolicies",
      "iam:ListRoleTags",
      "iam:PassRole",
      "iam:PutRolePermissionsBoundary",
      "iam:PutRolePolicy",
      "iam:TagRole",
      "iam:UntagRole",
      "iam:UpdateAssumeRolePolicy",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
    ]
    resources = ["${local.iam_arn}:role/${local.name}-*"]
  }

  statement {
    sid = "ManageTitanicPolicies"
    actions = [
      "iam:CreatePolicy",
      "iam:CreatePolicyVersion",
      "iam:DeletePolicy",
      "iam:DeletePolicyVersion",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:ListEntitiesForPolicy",
      "iam:ListPolicyTags",
      "iam:ListPolicyVersions",
      "iam:SetDefaultPolicyVersion",
      "iam:TagPolicy",
      "iam:UntagPolicy",
    ]
    resources = ["${local.iam_arn}:policy/${local.name}-*"]
  }

  statement {
    sid = "ManageGithubOidcProvider"
    actions = [
      "iam:AddClientIDToOpenIDConnectProvider",
      "iam:CreateOpenIDConnectProvider",
      "iam:DeleteOpenIDConnectProvider",
      "iam:GetOpenIDConnectProvider",
      "iam:ListOpenIDConnectProviderTags",
      "iam:RemoveClientIDFromOpenIDConnectProvider",
      "iam:TagOpenIDConnectProvider",
      "iam:UntagOpenIDConnectProvider",
      "iam:UpdateOpenIDConnectProviderThumbprint",
    ]
    resources = ["${local.iam_arn}:oidc-provider/token.actions.githubusercontent.com"]
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
    resources = ["${local.iam_arn}:role/aws-service-role/*"]
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
# Permissions boundary. Every role of this environment carries it: the three roles
# here, the EKS cluster and node roles, the Pod Identity roles and Karpenter's. It
# allows at most what the apply role may do (everything but IAM and Organizations, IAM
# within titanic-<env>-*) plus the instance profiles Karpenter manages, and it repeats
# the guardrails: a role may only create or change roles that carry this boundary, may
# never remove a boundary, and may never edit the boundary itself. So a role the apply
# role creates, whatever policies it attaches, can do no more than the apply role, and
# the boundary cannot be widened from CI: changes to it are applied by an administrator
# (README.md, "Permissions boundary").
################################################################################

locals {
  permissions_boundary_name = "${local.name}-permissions-boundary"
  # Roles take the ARN from the resource, so they are created after the policy exists.
  permissions_boundary_arn = aws_iam_policy.permissions_boundary.arn
}

data "aws_iam_policy_document" "iam_guardrails" {
  statement {
    sid    = "DenyRolesWithoutTheBoundary"
    effect = "Deny"
    actions = [
      "iam:AttachRolePolicy",
      "iam:CreateRole",
      "iam:PutRolePermissionsBoundary",
      "iam:PutRolePolicy",
    ]
    resources = ["*"]
    condition {
      test     = "ArnNotEquals"
      variable = "iam:PermissionsBoundary"
      # Built from the name: the boundary's own document cannot refer to its ARN attribute.
      values = ["${local.iam_arn}:policy/${local.permissions_boundary_name}"]
    }
  }

  statement {
    sid       = "DenyBoundaryRemoval"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary"]
    resources = ["*"]
  }

  statement {
    sid    = "DenyBoundaryChanges"
    effect = "Deny"
    actions = [
      "iam:CreatePolicyVersion",
      "iam:DeletePolicy",
      "iam:DeletePolicyVersion",
      "iam:SetDefaultPolicyVersion",
    ]
    resources = ["${local.iam_arn}:policy/${local.permissions_boundary_name}"]
  }
}

data "aws_iam_policy_document" "permissions_boundary" {
  #checkov:skip=CKV_AWS_107:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  #checkov:skip=CKV_AWS_108:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  #checkov:skip=CKV_AWS_109:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  #checkov:skip=CKV_AWS_110:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  #checkov:skip=CKV_AWS_111:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  #checkov:skip=CKV_AWS_356:A permissions boundary grants nothing by itself: it is the ceiling of each role's own policies (PowerUserAccess-like, IAM only within titanic-<env>-*).
  source_policy_documents = [
    data.aws_iam_policy_document.terraform_apply_iam.json,
    data.aws_iam_policy_document.iam_guardrails.json,
  ]

  statement {
    sid         = "EverythingButIamAndOrganizations"
    not_actions = ["iam:*", "organizations:*", "account:*"]
    resources   = ["*"]
  }

  # Karpenter names its instance profiles itself; its own policy scopes them by tag.
  statement {
    sid = "KarpenterInstanceProfiles"
    actions = [
      "iam:AddRoleToInstanceProfile",
      "iam:CreateInstanceProfile",
      "iam:DeleteInstanceProfile",
      "iam:GetInstanceProfile",
      "iam:RemoveRoleFromInstanceProfile",
      "iam:TagInstanceProfile",
    ]
    resources = ["${local.iam_arn}:instance-profile/*"]
  }

  statement {
    sid       = "KarpenterListInstanceProfiles"
    actions   = ["iam:ListInstanceProfiles"]
    resources = ["*"]
  }
}

resource "aws_iam_policy" "permissions_boundary" {
  name        = local.permissions_boundary_name
  description = "Permissions boundary of every ${local.name} role: no IAM beyond titanic roles, no role without this boundary"
  policy      = data.aws_iam_policy_document.permissions_boundary.json
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
      inline      = data.aws_iam_policy_document.terraform_apply.json
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

  policies             = each.value.policies
  permissions_boundary = local.permissions_boundary_arn

  create_inline_policy           = true
  source_inline_policy_documents = [each.value.inline]

  tags = local.tags

  depends_on = [module.github_oidc_provider]
}
