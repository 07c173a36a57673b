# TLS for the ALB: an ACM certificate for public_hostname, validated by DNS in this
# environment's Route 53 zone. The ingress finds it by host name (the AWS Load Balancer
# Controller's certificate discovery) or by the acm_certificate_arn output. ExternalDNS
# (pod_identity.tf) publishes the host itself.

locals {
  route53_zone_arn = "arn:${local.partition}:route53:::hostedzone/${var.route53_zone_id}"
}

resource "aws_acm_certificate" "public" {
  domain_name       = var.public_hostname
  validation_method = "DNS"

  # A replacement (a new host name) is issued before the old certificate, still attached to
  # the ALB, is deleted.
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "certificate_validation" {
  for_each = {
    for option in aws_acm_certificate.public.domain_validation_options : option.domain_name => {
      name   = option.resource_record_name
      type   = option.resource_record_type
      record = option.resource_record_value
    }
  }

  zone_id         = var.route53_zone_id
  name            = each.value.name
  type            = each.value.type
  records         = [each.value.record]
  ttl             = 300
  allow_overwrite = true
}

# Waits until ACM has issued the certificate, so its ARN is only output once it can be used.
resource "aws_acm_certificate_validation" "public" {
  certificate_arn         = aws_acm_certificate.public.arn
  validation_record_fqdns = [for record in aws_route53_record.certificate_validation : record.fqdn]
}
