locals {
  # The label of the on-demand system nodes, which the critical add-ons select (and the Helm
  # controllers should: README.md, "System node group").
  system_node_selector = { "titanic.io/pool" = "system" }
}

module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = local.name
  kubernetes_version = var.kubernetes_version

  # GitHub-hosted runners deploy over the public endpoint; every call still needs an
  # IAM identity with an access entry. Nodes use the private endpoint.
  endpoint_public_access       = true
  endpoint_private_access      = true
  endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs

  # Access entries only (no aws-auth ConfigMap); nobody is admin implicitly.
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = false

  # Pod Identity instead of IRSA: no cluster OIDC provider needed.
  enable_irsa = false

  # titanic-<env>-* names keep every IAM object inside the Terraform role's IAM scope, and
  # every role carries the permissions boundary (iam.tf).
  iam_role_name                 = "${local.name}-cluster"
  iam_role_permissions_boundary = local.permissions_boundary_arn
  encryption_policy_name        = "${local.name}-cluster-encryption"

  # The secrets-encryption key's administrators, set explicitly: the module's default is
  # whoever runs the apply, so an admin's apply and CI's apply would rewrite the key policy
  # back and forth. The account root statement (kms_key_enable_default_policy, on by
  # default) still lets IAM administrators manage the key.
  kms_key_administrators = [module.github_role["terraform"].arn]

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # Karpenter's EC2NodeClass selects the node security group (and the private subnets,
  # vpc.tf) by this tag, so its nodes reach the database like the node group's.
  node_security_group_tags = {
    "karpenter.sh/discovery" = local.name
  }

  addons = {
    vpc-cni = {
      before_compute = true
      configuration_values = jsonencode({
        # Enforce Kubernetes NetworkPolicies (the Kustomize network-policy component).
        enableNetworkPolicy = "true"
        # The CNI tags the ENIs it creates for pods only with its own keys
        # (amazon-vpc-cni-k8s, pkg/awsutils): without this, the other environment's isolation
        # (aws:ResourceTag/Environment, iam.tf) would not reach them.
        env = {
          ADDITIONAL_ENI_TAGS = jsonencode({ Environment = var.environment })
        }
      })
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
    # The cluster's DNS and the HPA's metrics stay on the on-demand system nodes: the node group
    # has no taint, so without a selector a rescheduled pod may land on a Karpenter Spot node.
    coredns = {
      configuration_values = jsonencode({ nodeSelector = local.system_node_selector })
    }
    kube-proxy = {}
    metrics-server = {
      configuration_values = jsonencode({ nodeSelector = local.system_node_selector })
    }
    # Container logs (Fluent Bit) and Container Insights metrics to CloudWatch.
    amazon-cloudwatch-observability = {
      pod_identity_association = [{
        role_arn        = module.cloudwatch_observability_pod_identity.iam_role_arn
        service_account = "cloudwatch-agent"
      }]
    }
  }

  access_entries = merge(
    {
      # CI deploys the app: edit rights in this environment's app namespace, plus whatever
      # kustomize/ binds to the Kubernetes group titanic-deployers. EKS access policies are
      # fixed sets of rules (aggregated ClusterRoles do not extend them), so the objects
      # AmazonEKSEditPolicy does not cover (ExternalSecret, ServiceMonitor, Namespace,
      # ResourceQuota...) are granted by Roles/ClusterRoles bound to that group.
      deploy = {
        principal_arn     = module.github_role["deploy"].arn
        kubernetes_groups = ["titanic-deployers"]
        policy_associations = {
          app_namespace = {
            policy_arn = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
            access_scope = {
              type       = "namespace"
              namespaces = [local.app_namespace]
            }
          }
        }
      }
    },
    {
      # Keyed by the admin's name, so reordering or adding admins replaces nobody's entry.
      for name, arn in var.cluster_admin_arns : "admin-${name}" => {
        principal_arn = arn
        policy_associations = {
          cluster_admin = {
            policy_arn = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
            access_scope = {
              type = "cluster"
            }
          }
        }
      }
    }
  )

  # The small fixed system pool: it runs Karpenter itself, CoreDNS and the add-ons (nothing
  # scales it). On-demand, so a Spot interruption cannot take DNS and node autoscaling down
  # together (README.md, "System node group"). Karpenter (karpenter.tf) adds and removes the
  # Spot nodes the app needs.
  eks_managed_node_groups = {
    system = {
      ami_type       = "AL2023_ARM_64_STANDARD"
      capacity_type  = "ON_DEMAND"
      instance_types = var.node_instance_types

      min_size     = var.node_min_size
      max_size     = var.node_max_size
      desired_size = var.node_desired_size

      # EKS adds kubernetes.io/arch=arm64 and eks.amazonaws.com/capacityType=ON_DEMAND itself.
      # No taint: the add-ons' charts need no tolerations to run here, and the app may use
      # spare room before Karpenter adds a node.
      labels = local.system_node_selector

      iam_role_name                 = "${local.name}-system-node"
      iam_role_permissions_boundary = local.permissions_boundary_arn

      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = 20
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }

      update_config = {
        max_unavailable = 1
      }
    }
  }

  tags = local.tags
}
