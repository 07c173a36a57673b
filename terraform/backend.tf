# Remote state in S3 with S3-native locking (a .tflock object next to the state; no
# DynamoDB table). Bucket, key and region are environment-specific and passed at init:
#
#   terraform init -backend-config="bucket=<state bucket>" \
#                  -backend-config="key=titanic/dev.tfstate" \
#                  -backend-config="region=us-east-1"
#
# See README.md ("Apply order") for creating the bucket.
terraform {
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}
