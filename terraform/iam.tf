################################################################################
# GitHub Actions OIDC: the provider (one per account) and the roles CI assumes.
#
# Each role trusts an explicit list of exact token subjects (StringEquals, no wildcards),
# matching the jobs of .github/workflows/deploy.yml and terraform.yml:
#   image-push      repo:<owner/name>:ref:refs/heads/main        (image job on main, deploy markers)
#                   repo:<owner/name>:environment:release        (image job of a vX.Y.Z tag)
#                   Created by the environment owning the ECR repository (create_shared_resources).
#   deploy          repo:<owner/name>:environment:<env>          (the env's deploy job, protected)
#   terraform       repo:<owner/name>:environment:terraform-<env> (apply jobs, protected)
#   terraform-plan  dev:  repo:<owner/name>:pull_request         (plans of pull requests)
#                         repo:<owner/name>:ref:refs/heads/main  (plan before the apply)
#                   prod: repo:<owner/name>:ref:refs/heads/main  (only)
# so nothing running for dev can act on prod, a pull request can never apply, and a tag build
# (anyone with write access can push a tag) can push an image but not deploy one.
#
# Prod is never planned for a pull request: a plan refreshes the write-only Django secret
# version, which reads the secret (GetSecretValue), and a pull request's branch can change
# the workflow to print whatever its role can read. Prod is planned on main, after review,
# before the terraform-prod approval.
################################################################################

locals {
  github_subject_prefix = "repo:${var.github_repository}"
  github_main           = "${local.github_subject_prefix}:ref:refs/heads/main"
  github_release        = "${local.github_subject_prefix}:environment:release"
  github_subjects_by_environment = {
    dev = {
      deploy         = ["${local.github_subject_prefix}:environment:dev"]
      terraform      = ["${local.github_subject_prefix}:environment:terraform-dev"]
      terraform-plan = ["${local.github_subject_prefix}:pull_request", local.github_main]
      image-push     = [local.github_main, local.github_release]
      dr-drill       = ["${local.github_subject_prefix}:environment:dr-drill-dev"]
    }
    prod = {
      deploy         = ["${local.github_subject_prefix}:environment:prod"]
      terraform      = ["${local.github_subject_prefix}:environment:terraform-prod"]
      terraform-plan = [local.github_main]
      image-push     = [local.github_main, local.github_release]
      dr-drill       = ["${local.github_subject_prefix}:environment:dr-drill-prod"]
    }
  }
  github_subjects = local.github_subjects_by_environment[var.environment]

  cluster_arn = "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${local.name}"
  iam_arn     = "arn:${local.partition}:iam::${local.account_id}"

  github_oidc_provider_arn = "${local.iam_arn}:oidc-provider/token.actions.githubusercontent.com"
  state_bucket_arn         = "arn:${local.partition}:s3:::${var.state_bucket}"
}

module "github_oidc_provider" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/iam/aws//modules/iam-oidc-provider"
  version = "~> 6.0"

  count = var.create_shared_resources ? 1 : 0

  url = "https://token.actions.githubusercontent.com"

  # Shared by both environments, changed by administrators only (DenySharedResourceChanges).
  tags = local.shared_tags
}

################################################################################
# Image push role (main and tag builds): push to the one ECR repository, nothing else.
# Deploy role (the env's deploy job): find its cluster; the EKS access entry (eks.tf) gives
# it edit rights in the app namespace. It cannot push images.
################################################################################

data "aws_iam_policy_document" "image_push" {
  statement {
    sid = "EcrLogin"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPushPullTitanicApi"
    # BatchGetImage + PutImage also add a tag to an existing image (the deploy markers).
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [local.ecr_repository_arn]
  }
}

data "aws_iam_policy_document" "deploy" {
  statement {
    sid       = "DescribeCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [local.cluster_arn]
  }
}

################################################################################
# Terraform roles for the terraform workflow.
#   plan  (dev: pull requests and main; prod: main only): AWS ReadOnlyAccess, plus reading
#         this environment's Django secret (refreshing a secret version reads it). Plans run
#         with -lock=false: the role writes nothing in the state bucket (DenyStateWrites).
#   apply (terraform-<env> environment): PowerUserAccess (everything but IAM and
#         Organizations) plus IAM limited to titanic-<env>-* roles and policies and the
#         service-linked roles EKS/RDS/ELB/Auto Scaling need, under the guardrails below.
################################################################################

data "aws_iam_policy" "read_only" {
  name = "ReadOnlyAccess"
}

data "aws_iam_policy" "power_user" {
  name = "PowerUserAccess"
}

data "aws_iam_policy_document" "terraform_plan" {
  statement {
    sid       = "RefreshDjangoSecretVersion"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.django_secret_key.arn]
  }

  # Pull requests assume this role (dev): not one object of the state bucket, lock files
  # included, may be written, whatever managed policy the role ever gets.
  statement {
    sid    = "DenyStateWrites"
    effect = "Deny"
    actions = [
      "s3:Delete*",
      "s3:Put*",
      "s3:Replicate*",
      "s3:RestoreObject",
    ]
    resources = [local.state_bucket_arn, "${local.state_bucket_arn}/*"]
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
    # No iam:UpdateAssumeRolePolicy: who may assume a role is decided by administrators
    # (DenyTrustPolicyChanges).
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
    sid = "ReadGithubOidcProvider"
    # Refresh only: the provider is shared and changed by administrators.
    actions   = ["iam:GetOpenIDConnectProvider", "iam:ListOpenIDConnectProviderTags"]
    resources = [local.github_oidc_provider_arn]
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
# Permissions boundary. Every role of this environment carries it: the GitHub roles here,
# the EKS cluster and node roles, the Pod Identity roles and Karpenter's. It allows at most
# what the apply role may do (everything but IAM and Organizations, IAM within
# titanic-<env>-*), secrets only under titanic/<env>/, database logins only on this
# environment's instance, plus the instance profiles Karpenter manages; and it repeats the
# guardrails and the isolation below. So a role the apply role creates, whatever policies it
# attaches, can do no more than the apply role and nothing in the other environment, and the
# boundary cannot be widened from CI: changes to it are applied by an administrator
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

  # Who may assume a role is written when the role is created and changed only by an
  # administrator: otherwise the apply role could make any titanic-<env>-* role (its own
  # included) trustable by another account or by pull requests. IAM has no condition key on
  # the content of a trust policy, so the action is denied, not scoped.
  statement {
    sid       = "DenyTrustPolicyChanges"
    effect    = "Deny"
    actions   = ["iam:UpdateAssumeRolePolicy"]
    resources = ["*"]
  }
}

################################################################################
# Environment isolation: dev and prod share one AWS account, so every role of an
# environment (the role policies of the GitHub roles, and the boundary of every role) is
# denied the other environment's resources: by tag where the action supports
# aws:ResourceTag, by ARN where it does not (S3 objects, EKS sub-resources, IAM), its state
# object, every database master password, and changes to what both share (the GitHub OIDC
# provider, the ECR repository, the state bucket), which only administrators make.
################################################################################

data "aws_iam_policy_document" "environment_isolation" {
  statement {
    sid       = "DenyOtherEnvironmentTaggedResources"
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Environment"
      values   = [local.other_environment]
    }
  }

  # Tags the controllers put on what they create in the other cluster: EKS managed nodes
  # (eks:cluster-name), the Load Balancer Controller's ALBs and target groups
  # (elbv2.k8s.aws/cluster), Karpenter's instances and volumes (kubernetes.io/cluster/<name>).
  statement {
    sid       = "DenyOtherClusterNodes"
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/eks:cluster-name"
      values   = [local.other_name]
    }
  }

  statement {
    sid       = "DenyOtherClusterLoadBalancers"
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/elbv2.k8s.aws/cluster"
      values   = [local.other_name]
    }
  }

  statement {
    sid       = "DenyOtherClusterKarpenterResources"
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/kubernetes.io/cluster/${local.other_name}"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTaggingAsOtherEnvironment"
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Environment"
      values   = [local.other_environment]
    }
  }

  # By name, for what tags cannot protect (actions without aws:ResourceTag, resources named
  # before they are tagged).
  statement {
    sid     = "DenyOtherEnvironmentByName"
    effect  = "Deny"
    actions = ["*"]
    resources = [
      "arn:${local.partition}:eks:*:${local.account_id}:cluster/${local.other_name}",
      "arn:${local.partition}:eks:*:${local.account_id}:*/${local.other_name}/*",
      "arn:${local.partition}:rds:*:${local.account_id}:db:${local.other_name}",
      "arn:${local.partition}:rds:*:${local.account_id}:snapshot:*${local.other_name}*",
      "arn:${local.partition}:rds:*:${local.account_id}:pg:${local.other_name}*",
      "arn:${local.partition}:rds:*:${local.account_id}:subgrp:${local.other_name}*",
      "arn:${local.partition}:secretsmanager:*:${local.account_id}:secret:titanic/${local.other_environment}/*",
      "${local.iam_arn}:role/${local.other_name}-*",
      "${local.iam_arn}:policy/${local.other_name}-*",
      "${local.iam_arn}:instance-profile/${local.other_name}_*",
      "arn:${local.partition}:sqs:*:${local.account_id}:${local.other_name}-*",
      "arn:${local.partition}:logs:*:${local.account_id}:log-group:*${local.other_name}*",
      "arn:${local.partition}:kms:*:${local.account_id}:alias/eks/${local.other_name}",
      "arn:${local.partition}:wafv2:*:${local.account_id}:regional/webacl/${local.other_name}-*/*",
    ]
  }

  # The RDS-managed master password (secret rds!db-...) is for administrators, who are not
  # under the boundary; no workload of either environment reads it (the app uses IAM auth).
  statement {
    sid       = "DenyDatabaseMasterSecretValues"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    resources = ["arn:${local.partition}:secretsmanager:*:${local.account_id}:secret:rds!*"]
  }

  statement {
    sid       = "DenyOtherEnvironmentState"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["${local.state_bucket_arn}/titanic/${local.other_environment}.tfstate*"]
  }

  # Record changes only in this environment's zone.
  statement {
    sid    = "DenyOtherDnsZones"
    effect = "Deny"
    actions = [
      "route53:ChangeResourceRecordSets",
      "route53:DeleteHostedZone",
    ]
    not_resources = [local.route53_zone_arn]
  }

  statement {
    sid    = "DenySharedResourceChanges"
    effect = "Deny"
    actions = [
      "ecr:BatchDeleteImage",
      "ecr:DeleteLifecyclePolicy",
      "ecr:DeleteRepository",
      "ecr:DeleteRepositoryPolicy",
      "ecr:PutImageScanningConfiguration",
      "ecr:PutImageTagMutability",
      "ecr:PutLifecyclePolicy",
      "ecr:SetRepositoryPolicy",
      "ecr:TagResource",
      "ecr:UntagResource",
      "iam:AddClientIDToOpenIDConnectProvider",
      "iam:DeleteOpenIDConnectProvider",
      "iam:RemoveClientIDFromOpenIDConnectProvider",
      "iam:TagOpenIDConnectProvider",
      "iam:UntagOpenIDConnectProvider",
      "iam:UpdateOpenIDConnectProviderThumbprint",
    ]
    resources = [local.ecr_repository_arn, local.github_oidc_provider_arn]
  }

  statement {
    sid    = "DenyStateBucketChanges"
    effect = "Deny"
    actions = [
      "s3:DeleteBucket*",
      "s3:PutBucket*",
      "s3:PutEncryptionConfiguration",
      "s3:PutLifecycleConfiguration",
      "s3:PutReplicationConfiguration",
    ]
    resources = [local.state_bucket_arn]
  }

  # The bucket is versioned: an overwritten state can be recovered unless its versions go.
  statement {
    sid       = "DenyStateHistoryDeletion"
    effect    = "Deny"
    actions   = ["s3:DeleteObjectVersion*"]
    resources = ["${local.state_bucket_arn}/*"]
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
    data.aws_iam_policy_document.environment_isolation.json,
  ]

  statement {
    sid = "EverythingButIamAndOrganizations"
    # Secret values and database logins are allowed below, for this environment only.
    not_actions = ["iam:*", "organizations:*", "account:*", "rds-db:*", "secretsmanager:GetSecretValue"]
    resources   = ["*"]
  }

  statement {
    sid       = "ReadThisEnvironmentsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:${local.partition}:secretsmanager:${var.region}:${local.account_id}:secret:titanic/${var.environment}/*"]
  }

  statement {
    sid       = "ConnectToThisEnvironmentsDatabase"
    actions   = ["rds-db:connect"]
    resources = ["${local.db_user_arn_prefix}/*"]
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
  description = "Permissions boundary of every ${local.name} role: no IAM beyond titanic roles, no role without this boundary, nothing of ${local.other_name}"
  policy      = data.aws_iam_policy_document.permissions_boundary.json
}

################################################################################
# The GitHub roles, one module call each. Every role policy carries the environment
# isolation as well (the boundary repeats it).
################################################################################

locals {
  github_role_definitions = {
    deploy = {
      description = "GitHub Actions deploy for ${local.name}: edit rights in ${local.app_namespace}"
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
    image-push = {
      description = "GitHub Actions image builds: push titanic-api images (no cluster access)"
      subjects    = local.github_subjects.image-push
      policies    = {}
      inline      = data.aws_iam_policy_document.image_push.json
    }
    dr-drill = {
      description = "GitHub Actions restore drill for ${local.name}: restore into, check and delete ${local.name}-drill-* RDS instances (dr_drill.tf)"
      subjects    = local.github_subjects.dr-drill
      policies    = {}
      inline      = data.aws_iam_policy_document.dr_drill.json
    }
  }
  # The image builds push to the shared repository: its role lives where the repository does.
  github_roles = { for key, role in local.github_role_definitions : key => role if key != "image-push" || var.create_shared_resources }
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

  create_inline_policy = true
  source_inline_policy_documents = [
    each.value.inline,
    data.aws_iam_policy_document.environment_isolation.json,
  ]

  tags = local.tags

  depends_on = [module.github_oidc_provider]
}
