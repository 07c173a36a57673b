################################################################################
# General
################################################################################

variable "environment" {
  description = "Environment name (dev or prod). Drives resource names (titanic-<env>), the app namespace (titanic-<env>) and the Secrets Manager path titanic/<env>/."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "region" {
  description = "AWS region for every resource of this environment."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1."
  }
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may assume the deploy and Terraform roles. CI passes it as TF_VAR_github_repository=$${{ github.repository }}."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be \"owner/name\" (no wildcards)."
  }
}

variable "create_shared_resources" {
  description = "Create the account-wide singletons: the GitHub OIDC provider and the titanic-api ECR repository. Exactly one environment per AWS account/region sets this to true (dev); the other looks them up."
  type        = bool
  default     = true
}

variable "state_bucket" {
  description = "Name of the S3 bucket holding the Terraform state (the same one given to terraform init). Used to let the read-only plan role take the S3 lock."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket must be a valid S3 bucket name."
  }
}

################################################################################
# Network
################################################################################

variable "vpc_cidr" {
  description = "CIDR block of the VPC (a /16; private, public and database subnets are carved from it)."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && endswith(var.vpc_cidr, "/16")
    error_message = "vpc_cidr must be a valid /16 IPv4 CIDR block."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread subnets over (2 or 3)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3 (EKS and RDS subnet groups need at least 2)."
  }
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway (cheap, dev) instead of one per AZ (resilient to an AZ outage, prod)."
  type        = bool
  default     = true
}

################################################################################
# EKS
################################################################################

variable "kubernetes_version" {
  description = "Kubernetes <major>.<minor> version of the EKS control plane and node group."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35."
  }
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public EKS API endpoint (GitHub-hosted runners need it; access still requires an IAM access entry)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "cluster_endpoint_public_access_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "cluster_admin_arns" {
  description = "Cluster administrators, by name: {\"<name>\" = \"<IAM role or user ARN>\"}, each given AmazonEKSClusterAdminPolicy through an access entry keyed admin-<name>. Required and non-empty: an apply without it would delete every admin's access entry. Pass at apply time (TF_VAR_cluster_admin_arns='{\"alice\":\"<ARN>\"}'; CI: the CLUSTER_ADMIN_ARNS variable); never commit account ids."
  type        = map(string)

  validation {
    condition     = length(var.cluster_admin_arns) > 0
    error_message = "cluster_admin_arns must name at least one cluster administrator (an empty map would delete every admin access entry)."
  }

  validation {
    condition     = alltrue([for name, arn in var.cluster_admin_arns : can(regex("^[a-z0-9][a-z0-9-]{0,30}$", name)) && can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "cluster_admin_arns must map short lower-case names (a-z, 0-9, -) to IAM role or user ARNs."
  }
}

variable "node_instance_types" {
  description = "Graviton (ARM64) instance types of the on-demand system node group (Karpenter, CoreDNS, metrics-server, External Secrets, the Load Balancer Controller, ExternalDNS, the Prometheus stack), in order of preference. Each must hold their pods within its VPC CNI pod limit: t4g.medium (17 pods) cannot, t4g.large (35) and m7g.large (29) can (terraform/README.md, \"System node group\"; tests/test_capacity.py)."
  type        = list(string)
  default     = ["t4g.large", "m7g.large"]

  validation {
    condition     = length(var.node_instance_types) >= 1 && alltrue([for t in var.node_instance_types : can(regex("^[a-z]+[0-9]+g[a-z]*\\.[a-z0-9]+$", t))])
    error_message = "node_instance_types must list Graviton (…g.*) instance types."
  }
}

variable "node_min_size" {
  description = "Minimum number of nodes in the on-demand system node group (prod: 2, one per AZ, so one node's loss leaves CoreDNS and Karpenter running)."
  type        = number
  default     = 1

  validation {
    condition     = var.node_min_size >= 1
    error_message = "node_min_size must be at least 1 (CoreDNS, Karpenter and the add-ons run on these nodes)."
  }
}

variable "node_max_size" {
  description = "Maximum number of nodes in the on-demand system node group."
  type        = number
  default     = 3

  validation {
    condition     = var.node_max_size >= var.node_min_size
    error_message = "node_max_size must be >= node_min_size."
  }
}

variable "node_desired_size" {
  description = "Initial number of nodes (ignored by the module after creation, so an autoscaler can own it)."
  type        = number
  default     = 1

  validation {
    condition     = var.node_desired_size >= var.node_min_size && var.node_desired_size <= var.node_max_size
    error_message = "node_desired_size must lie between node_min_size and node_max_size."
  }
}

################################################################################
# RDS
################################################################################

variable "db_engine_version" {
  description = "PostgreSQL engine version (major, or major.minor). 16 matches the version CI tests against."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.db_engine_version)) && try(tonumber(split(".", var.db_engine_version)[0]) >= 16, false)
    error_message = "db_engine_version must be PostgreSQL 16 or newer, e.g. \"16\" or \"16.8\"."
  }
}

variable "db_instance_class" {
  description = "RDS instance class (Graviton burstable t4g)."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = startswith(var.db_instance_class, "db.t4g.")
    error_message = "db_instance_class must be a db.t4g.* class."
  }
}

variable "db_allocated_storage" {
  description = "Initial gp3 storage of the database, in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20
    error_message = "db_allocated_storage must be at least 20 GiB (gp3 minimum)."
  }
}

variable "db_max_allocated_storage" {
  description = "Upper limit for storage autoscaling, in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.db_max_allocated_storage >= var.db_allocated_storage
    error_message = "db_max_allocated_storage must be >= db_allocated_storage."
  }
}

variable "db_multi_az" {
  description = "Run a synchronous standby in a second AZ (prod)."
  type        = bool
  default     = false
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion; also takes a final snapshot on destroy (prod)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (and so of point-in-time recovery)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 7 and 35."
  }
}

variable "db_keep_automated_backups" {
  description = "Keep the automated backups (point-in-time recovery) when the instance is deleted, until their retention ends. Prod keeps them: a destroyed database can be restored."
  type        = bool
  default     = true
}

variable "db_password_rotation_days" {
  description = "Days between automatic rotations of the RDS-managed master password. Only administrators use the master user: the app and the migrate Job authenticate with IAM (rds.tf), so a rotation touches no workload."
  type        = number
  default     = 30

  validation {
    condition     = var.db_password_rotation_days >= 1 && var.db_password_rotation_days <= 365
    error_message = "db_password_rotation_days must be between 1 and 365."
  }
}

################################################################################
# Secrets, logs, WAF
################################################################################

variable "public_hostname" {
  description = "The public host name of the app in this environment (the Ingress host, e.g. titanic.example.com): ACM certificate subject, and the one name ExternalDNS may publish. CI passes it as TF_VAR_public_hostname (repository variable PUBLIC_HOSTNAME_<ENV>)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.public_hostname))
    error_message = "public_hostname must be a lower-case DNS name such as titanic.example.com (no scheme, no trailing dot, no wildcard)."
  }
}

variable "route53_zone_id" {
  description = "Route 53 public hosted zone (id, e.g. Z0123456789ABCDEFGHIJ) that holds public_hostname: the certificate is validated there and ExternalDNS may change records only there. Give each environment its own zone (e.g. a delegated dev subdomain): every role of an environment is denied record changes in any other zone. CI passes it as TF_VAR_route53_zone_id (ROUTE53_ZONE_ID_<ENV>)."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a Route 53 hosted zone id (Z followed by upper-case letters and digits)."
  }
}

variable "django_secret_key_version" {
  description = "Bump to generate and store a new Django SECRET_KEY (write-only: the value never enters state). Rotating it logs every user out."
  type        = number
  default     = 1

  validation {
    condition     = var.django_secret_key_version >= 1 && floor(var.django_secret_key_version) == var.django_secret_key_version
    error_message = "django_secret_key_version must be a positive integer."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for EKS control-plane, container, RDS and WAF logs."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "enable_waf" {
  description = "Create a regional WAF web ACL (per-IP rate limit and AWS known-bad-inputs rules) for the ALB. The ingress attaches it with the alb.ingress.kubernetes.io/wafv2-acl-arn annotation."
  type        = bool
  default     = false
}

variable "waf_rate_limit" {
  description = "Requests allowed per client IP in any 5-minute window before WAF blocks it."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be between 10 and 2,000,000,000."
  }
}
