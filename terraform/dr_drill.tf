################################################################################
# Restore drill (scripts/dr-drill aws <env>, .github/workflows/dr-drill.yml; docs/runbook.md,
# "Restore drills"): its own GitHub OIDC role (module.github_role["dr-drill"] in iam.tf, with the
# environment isolation every GitHub role carries), trusted by the jobs of the GitHub environment
# dr-drill-<env> only (restrict it to main; no reviewers, so the weekly run needs nobody).
#
# In RDS it may describe instances, restore titanic-<env> to a point in time into instances
# named titanic-<env>-drill-* (the request must tag them dr-drill), and modify (a new master
# password) and delete only instances with that name and tag. It cannot modify, delete or log
# in to titanic-<env>: the restore needs the source's ARN, but RDS never restores into an
# existing identifier, and the only other name allowed is a drill's. It reads no secret.
#
# In the cluster: edit rights in namespace titanic-dr-drill (the check Job and its Secret,
# kustomize/drill) and read rights in the app namespace (the image the app runs; the view
# policy excludes Secrets). No Pod Identity association names titanic-dr-drill, so what runs
# there holds no AWS credentials: not the app's role, whose rds-db:connect grant is tied to
# the real instance's resource id. The check logs in with the master password the drill set
# on the throw-away instance alone.
#
# What it can do that matters: read a copy of the data (what a drill checks), and pay for
# an instance for as long as a drill runs.
################################################################################

locals {
  dr_drill_namespace = "titanic-dr-drill"
  dr_drill_rds_arn   = "arn:${local.partition}:rds:${var.region}:${local.account_id}"
  dr_drill_instances = "${local.dr_drill_rds_arn}:db:${local.name}-drill-*"
}

data "aws_iam_policy_document" "dr_drill" {
  statement {
    sid       = "DescribeInstances"
    actions   = ["rds:DescribeDBInstances"]
    resources = ["${local.dr_drill_rds_arn}:db:*"]
  }

  statement {
    sid     = "RestoreIntoDrillInstances"
    actions = ["rds:RestoreDBInstanceToPointInTime"]
    # The action is authorized on the source and the target instance, and on the subnet,
    # parameter and option groups the new instance gets.
    resources = [
      "${local.dr_drill_rds_arn}:db:${local.name}",
      local.dr_drill_instances,
      "${local.dr_drill_rds_arn}:subgrp:${local.name}",
      "${local.dr_drill_rds_arn}:pg:${local.name}-*",
      "${local.dr_drill_rds_arn}:og:default:postgres-*",
    ]
    condition {
      # Matches any value, and fails when the tag is absent.
      test     = "StringLike"
      variable = "aws:RequestTag/dr-drill"
      values   = ["*"]
    }
  }

  statement {
    sid       = "TagDrillInstances"
    actions   = ["rds:AddTagsToResource"]
    resources = [local.dr_drill_instances]
  }

  statement {
    sid       = "ResetAndDeleteDrillInstances"
    actions   = ["rds:DeleteDBInstance", "rds:ModifyDBInstance"]
    resources = [local.dr_drill_instances]
    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/dr-drill"
      values   = ["*"]
    }
  }

  statement {
    sid       = "DescribeCluster"
    actions   = ["eks:DescribeCluster"]
    resources = ["arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${local.name}"]
  }
}

resource "aws_eks_access_entry" "dr_drill" {
  cluster_name  = module.eks.cluster_name
  principal_arn = module.github_role["dr-drill"].arn
}

resource "aws_eks_access_policy_association" "dr_drill" {
  for_each = {
    (local.dr_drill_namespace) = "AmazonEKSEditPolicy" # the check Job and its Secret
    (local.app_namespace)      = "AmazonEKSViewPolicy" # the image the app runs
  }

  cluster_name  = module.eks.cluster_name
  principal_arn = aws_eks_access_entry.dr_drill.principal_arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/${each.value}"

  access_scope {
    type       = "namespace"
    namespaces = [each.key]
  }
}

output "dr_drill_role_arn" {
  description = "Role the restore drill workflow assumes (GitHub OIDC): variable DR_DRILL_ROLE_ARN of the GitHub environment dr-drill-<env>."
  value       = module.github_role["dr-drill"].arn
}
