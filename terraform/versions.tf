terraform {
  # 1.11: write-only arguments (secret_string_wo) and ephemeral resources, which keep the
  # Django secret key out of state; the RDS module v7 needs 1.11 as well.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # >= 6: the module majors below need provider v6 (RDS module v7 needs 6.27).
      version = ">= 6.27"
    }
    random = {
      source = "hashicorp/random"
      # 3.7 introduced the ephemeral random_password.
      version = ">= 3.7"
    }
  }
}
