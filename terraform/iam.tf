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
#                         repo:<owner/name>:environment:terraform-plan-dev  (plan on main)
#                   prod: repo:<owner/name>:environment:terraform-plan-prod (only)
#                   Not ref:refs/heads/main: every job on main with id-token: write (image builds
#                   running third-party actions) would get the plan role, and its secret read.
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
      terraform-plan = ["${local.github_subject_prefix}:pull_request", "${local.github_subject_prefix}:environment:terraform-plan-dev"]
      image-push     = [local.github_main, local.github_release]
      dr-drill       = ["${local.github_subject_prefix}:environment:dr-drill-dev"]
    }
    prod = {
      deploy         = ["${local.github_subject_prefix}:environment:prod"]
      terraform      = ["${local.github_subject_prefix}:environment:terraform-prod"]
      terraform-plan = ["${local.github_subject_prefix}:environment:terraform-plan-prod"]
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

# No thumbprint_list: IAM verifies GitHub's OIDC endpoint against its library of trusted root CAs
# (IAM User Guide, "Obtain the thumbprint for an OpenID Connect identity provider"), and the
# provider's thumbprint_list is optional and computed (AWS provider >= 5.81). The iam-oidc-provider
# module set it from the endpoint's certificate, so GitHub's next certificate rotation would have
# planned an UpdateOpenIDConnectProviderThumbprint, which no role may call (DenySharedResourceChanges):
# every CI apply of dev would have failed until an administrator applied it.
resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_shared_resources ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]

  # Shared by both environments, changed by administrators only (DenySharedResourceChanges).
  tags = local.shared_tags
}

moved {
  from = module.github_oidc_provider[0].aws_iam_openid_connect_provider.this[0]
  to   = aws_iam_openid_connect_provider.github[0]
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
    data.aws_iam_policy_document.iam_reads.json,
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
}

# What the apply role reads and creates outside titanic-<env>-* (the boundary allows it too).
data "aws_iam_policy_document" "iam_reads" {
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
    actions   = ["iam:ListInstanceProfiles", "iam:ListOpenIDConnectProviders", "iam:ListPolicies", "iam:ListRoles"]
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

  # Removing a role's boundary, and changing who may assume a role: that is written when the
  # role is created and changed only by an administrator, otherwise the apply role could make any
  # titanic-<env>-* role (its own included) trustable by another account or by pull requests.
  # IAM has no condition key on the content of a trust policy, so the action is denied, not scoped.
  statement {
    sid       = "DenyBoundaryRemovalAndTrustChanges"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy"]
    resources = ["*"]
  }

  # Deleting a role and creating it again under the same name rewrites its trust as well: the
  # roles GitHub's jobs assume (github_role_definitions below) are created and deleted by
  # administrators only. A role of another name is still created with the trust written in code.
  statement {
    sid     = "DenyGithubRoleReplacement"
    effect  = "Deny"
    actions = ["iam:CreateRole", "iam:DeleteRole"]
    resources = [
      "${local.iam_arn}:role/${local.name}-deploy",
      "${local.iam_arn}:role/${local.name}-dr-drill",
      "${local.iam_arn}:role/${local.name}-image-push",
      "${local.iam_arn}:role/${local.name}-terraform*",
    ]
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
  # before they are tagged): every ARN of this account that contains titanic-<other> (its
  # cluster and EKS sub-resources, database, snapshots, parameter and subnet groups, roles,
  # policies, Karpenter's instance profiles, SQS queue, log groups, KMS alias, WAF ACL), its
  # secrets titanic/<other>/*, its state (and lock) titanic/<other>.tfstate*, and its ALBs, which the Load Balancer Controller names
  # k8s-<first 8 alphanumerics of the namespace>-... (wafv2's association calls see no tag).
  statement {
    sid     = "DenyOtherEnvironmentByName"
    effect  = "Deny"
    actions = ["*"]
    resources = [
      "arn:${local.partition}:*:*:${local.account_id}:*${local.other_name}*",
      "arn:${local.partition}:secretsmanager:*:${local.account_id}:secret:titanic/${local.other_environment}/*",
      "arn:${local.partition}:elasticloadbalancing:*:${local.account_id}:loadbalancer/app/${local.other_alb_name_prefix}*",
      "${local.state_bucket_arn}/titanic/${local.other_environment}.tfstate*",
    ]
  }

  # The other environment's network interfaces, security groups and subnets by their VPC, for
  # those that carry no tag (pod ENIs the VPC CNI created before it tagged them, eks.tf). The VPC
  # is looked up: dev's first apply finds no prod VPC, so an administrator applies dev again
  # after prod's first apply (README.md, "Apply order").
  dynamic "statement" {
    for_each = data.aws_vpcs.other_environment.ids
    content {
      sid       = "DenyOtherEnvironmentVpc${statement.key}"
      effect    = "Deny"
      actions   = ["ec2:*"]
      resources = ["*"]
      condition {
        test     = "ArnEquals"
        variable = "ec2:Vpc"
        values   = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:vpc/${statement.value}"]
      }
    }
  }

  # Administrators' alone: the RDS-managed master password (secret rds!db-...; no workload of
  # either environment reads it, the app uses IAM auth), and the backups kept after an instance's
  # deletion (prod keeps them), named auto-backup:ab-... without the instance's name, with no
  # documented tags: none is deleted, restored (a restore from the live instance, as the drill
  # does, is not on this resource) or replicated by a role under the boundary.
  statement {
    sid    = "DenyWhatOnlyAdministratorsDo"
    effect = "Deny"
    actions = [
      "rds:DeleteDBInstanceAutomatedBackup",
      "rds:RestoreDBInstanceToPointInTime",
      "rds:StartDBInstanceAutomatedBackupsReplication",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
    ]
    resources = [
      "arn:${local.partition}:rds:*:${local.account_id}:auto-backup:*",
      "arn:${local.partition}:secretsmanager:*:${local.account_id}:secret:rds!*",
    ]
  }

  # Route 53 changes only in this environment's zone: records, and everything else that writes a
  # zone (traffic policy instances create records, DNSSEC signing keys, VPC associations, tags).
  # Nothing here uses traffic policies, health checks or other zones.
  statement {
    sid    = "DenyOtherDnsZones"
    effect = "Deny"
    actions = [
      "route53:Activate*",
      "route53:Associate*",
      "route53:Change*",
      "route53:Create*",
      "route53:Deactivate*",
      "route53:Delete*",
      "route53:Disable*",
      "route53:Disassociate*",
      "route53:Enable*",
      "route53:Update*",
    ]
    not_resources = [local.route53_zone_arn]
  }

  # Attaching or removing a WAF web ACL is authorised on the ALB without any tag
  # (wafv2:AssociateWebACL, DisassociateWebACL) or on nothing (elasticloadbalancing:SetWebAcl): only
  # this environment's Load Balancer Controller does it (the prod Ingress's wafv2-acl-arn). Dev's
  # controller is kept off prod's ALBs by name (DenyOtherEnvironmentByName).
  statement {
    sid       = "DenyWebAclChanges"
    effect    = "Deny"
    actions   = ["elasticloadbalancing:SetWebAcl", "waf-regional:*associateWebACL", "wafv2:*associateWebACL"]
    resources = ["*"]
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = ["${local.iam_arn}:role/${local.name}-aws-lb-controller"]
    }
  }

  # What both environments share is read and used, never changed: the image repository is
  # pulled and pushed (pushes only by the image push role: its repository policy, ecr.tf), the
  # GitHub OIDC provider read.
  statement {
    sid    = "DenySharedResourceChanges"
    effect = "Deny"
    not_actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:Describe*",
      "ecr:Get*",
      "ecr:InitiateLayerUpload",
      "ecr:List*",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
      "iam:GetOpenIDConnectProvider",
      "iam:ListOpenIDConnectProviderTags",
    ]
    resources = [local.ecr_repository_arn, local.github_oidc_provider_arn]
  }

  # The bucket's configuration, and the state's history: the bucket is versioned, so an
  # overwritten state can be recovered unless its versions go.
  statement {
    sid    = "DenyStateBucketChanges"
    effect = "Deny"
    actions = [
      "s3:DeleteBucket*",
      "s3:DeleteObjectVersion*",
      "s3:PutBucket*",
      "s3:PutEncryptionConfiguration",
      "s3:PutLifecycleConfiguration",
      "s3:PutReplicationConfiguration",
    ]
    resources = [local.state_bucket_arn, "${local.state_bucket_arn}/*"]
  }

  # Account-wide ways around the denies above, which no role here needs: assuming another role
  # (one trusting this account would shed the boundary), an access point on the state bucket
  # (requests through it are authorised on the access point's ARN, not the bucket's), and
  # account-level CloudWatch Logs policies (a subscription filter on every log group, prod's
  # included, or a data protection policy over them).
  statement {
    sid    = "DenyAccountWideEscapes"
    effect = "Deny"
    actions = [
      "logs:DeleteAccountPolicy",
      "logs:PutAccountPolicy",
      "s3:CreateAccessPoint*",
      "s3:CreateMultiRegionAccessPoint",
      "sts:AssumeRole",
    ]
    resources = ["*"]
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
    data.aws_iam_policy_document.iam_reads.json,
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

  # IAM on this environment's roles and policies (the apply role's own statements list the
  # calls; the guardrails above deny trust changes, roles without this boundary and changes
  # to it), and on the instance profiles Karpenter creates: it names them <cluster>_<hash>
  # (since 1.x under the path /karpenter/<region>/<cluster>/<uid>/) and its own policy scopes
  # them by tag. No other instance profile (EKS's eks-<uuid> of the managed node groups, of
  # either environment) is in reach. One statement with iam:* keeps the boundary under IAM's
  # 6,144-character limit for a managed policy.
  statement {
    sid     = "IamOfThisEnvironment"
    actions = ["iam:*"]
    resources = [
      "${local.iam_arn}:instance-profile/*${local.name}_*",
      "${local.iam_arn}:policy/${local.name}-*",
      "${local.iam_arn}:role/${local.name}-*",
    ]
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

  depends_on = [aws_iam_openid_connect_provider.github]
}
