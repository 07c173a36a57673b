# Names that follow from the environment alone (no provider, no data source: the tests evaluate
# this block with Terraform for dev and prod).
locals {
  name    = "titanic-${var.environment}"
  is_prod = var.environment == "prod"

  # The other environment in the same AWS account: every role here is denied its resources
  # (iam.tf, environment_isolation).
  other_environment = local.is_prod ? "dev" : "prod"
  other_name        = "titanic-${local.other_environment}"

  # The Kubernetes namespace the app runs in on this environment's cluster.
  app_namespace = "titanic-${var.environment}"

  # The other environment's ALBs: the AWS Load Balancer Controller names an Ingress's ALB
  # k8s-<first 8 alphanumerics of its namespace>-<first 8 of its name>-<hash> (no group.name or
  # load-balancer-name annotation is used), so titanic-prod's are k8s-titanicp-*.
  other_alb_name_prefix = "k8s-${substr(replace("titanic-${local.other_environment}", "/[^0-9A-Za-z]/", ""), 0, 8)}-"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  # Applied to every resource through the provider's default_tags, and passed to the
  # modules as well so that launch-template tag specifications (EC2 instances, volumes)
  # carry them too.
  tags = {
    Project     = "titanic"
    Environment = var.environment
    ManagedBy   = "terraform"
    Repository  = var.github_repository
  }

  # The account-wide singletons one environment creates and both use (GitHub OIDC provider, ECR
  # repository) belong to neither: each environment's roles are denied the other environment's
  # resources by this tag, and neither may change these (iam.tf, DenySharedResourceChanges).
  shared_tags = merge(local.tags, { Environment = "shared" })

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first az_count zones (sorted by name) are used via slice(); a zone AWS adds later sorts after them and changes nothing.
  # Regular AZs only (no Local/Wavelength Zones).
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}

# The other environment's VPC in this account, if it exists yet (iam.tf, DenyOtherEnvironmentVpc).
data "aws_vpcs" "other_environment" {
  tags = {
    Project     = "titanic"
    Environment = local.other_environment
  }
}

data "aws_partition" "current" {}
