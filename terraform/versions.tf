terraform {
  # 1.11.1: the RDS module v7.1+ requires it (1.11 brought the write-only arguments and
  # ephemeral resources that keep the Django secret key out of state). Below 2.0: a new
  # major may change the language.
  required_version = ">= 1.11.1, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28: the floor of the module majors used here (rds v7.1+, iam v6, eks v21 and its
      # karpenter submodule, eks-pod-identity v2). Below 7.0: a provider major renames and
      # removes arguments, so it is adopted deliberately.
      version = ">= 6.28, < 7.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.7 introduced the ephemeral random_password.
      version = ">= 3.7, < 4.0"
    }
  }
}
