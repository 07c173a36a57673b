# One repository, titanic-api, shared by the environments of an account: CI builds an
# image once (tagged with the commit SHA) and promotes the same digest from dev to prod.
module "ecr" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/ecr/aws"
  version = "~> 3.0"

  count = var.create_shared_resources ? 1 : 0

  repository_name                 = "titanic-api"
  repository_image_tag_mutability = "IMMUTABLE"
  repository_image_scan_on_push   = true
  repository_force_delete         = false

  # Access is granted by identity policies (deploy role, node role), not a repository policy.
  create_repository_policy = false
  attach_repository_policy = false

  create_lifecycle_policy = true
  repository_lifecycle_policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Keep the last 20 images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 20
        }
        action = {
          type = "expire"
        }
      }
    ]
  })

  tags = local.tags
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
