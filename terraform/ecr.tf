# One repository, titanic-api, shared by the environments of an account: CI builds an
# image once (tagged with the commit SHA) and promotes the same digest from dev to prod. It is
# created by an administrator's first apply of the owning environment (dev); later changes
# to it (the lifecycle policy included) are applied by an administrator too, since no role of
# either environment may change it (iam.tf, DenySharedResourceChanges).
module "ecr" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/ecr/aws"
  version = "~> 3.0"

  count = var.create_shared_resources ? 1 : 0

  repository_name                 = "titanic-api"
  repository_image_tag_mutability = "IMMUTABLE"
  repository_image_scan_on_push   = true
  repository_force_delete         = false

  # Access is granted by identity policies (image push role, node roles). The repository policy
  # only denies: nobody but the image push role writes an image (below).
  create_repository_policy = false
  attach_repository_policy = true
  repository_policy        = data.aws_iam_policy_document.ecr_repository.json

  # What is kept and why: ecr-lifecycle-policy.json, evaluated on a year of synthetic history by
  # tests/test_terraform.py (README.md, "Image retention"). The deploy workflow tags every image
  # it deploys dev-<sha> / prod-<sha>, which is what rules 2 and 3 count.
  create_lifecycle_policy     = true
  repository_lifecycle_policy = file("${path.module}/ecr-lifecycle-policy.json")

  # Shared by both environments: neither environment's isolation denies apply to it, and
  # neither may change it from CI (iam.tf, DenySharedResourceChanges).
  tags = local.shared_tags
}

# Both environments deploy from this repository, and any role whose policies allow ecr:PutImage
# (dev's apply role has PowerUserAccess) could otherwise push: a tag prod deploys next (the image
# job would find it "already in ECR"), or 101 prod-* tags that make the lifecycle expire prod's
# images. A deny in the repository policy holds for every principal of the account, whatever its
# identity policies; the image push role (main and release builds, deploy.yml) is the exception.
# Its ARN is built from its name: the role's own policy refers to this repository.
data "aws_iam_policy_document" "ecr_repository" {
  statement {
    sid    = "OnlyTheImagePushRoleWrites"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions = [
      "ecr:CompleteLayerUpload",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = ["${local.iam_arn}:role/${local.name}-image-push"]
    }
  }
}

# The environment that does not own the repository looks it up.
data "aws_ecr_repository" "shared" {
  count = var.create_shared_resources ? 0 : 1

  name = "titanic-api"
}

locals {
  ecr_repository_arn = var.create_shared_resources ? module.ecr[0].repository_arn : data.aws_ecr_repository.shared[0].arn
  ecr_repository_url = var.create_shared_resources ? module.ecr[0].repository_url : data.aws_ecr_repository.shared[0].repository_url
}
