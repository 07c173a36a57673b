# The CloudWatch observability add-on's Fluent Bit and agent write to these log groups.
# Creating them here (before any node exists) sets their retention; otherwise the
# add-on creates them with "never expire".
resource "aws_cloudwatch_log_group" "container_insights" {
  #checkov:skip=CKV_AWS_158:Encrypted at rest by CloudWatch Logs with an AWS-owned key; a customer-managed key is not required for application logs here.
  #checkov:skip=CKV_AWS_338:Retention is a per-environment variable (dev keeps 14 days for cost; prod sets its own).
  for_each = toset(["application", "dataplane", "host", "performance"])

  name              = "/aws/containerinsights/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
}
