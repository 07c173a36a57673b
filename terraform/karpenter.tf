# Node autoscaling: Karpenter launches Graviton Spot (or on-demand fallback) nodes for pods
# the fixed system pool cannot hold. This creates its AWS side only: the controller's IAM
# role with a Pod Identity association (kube-system/karpenter), the SQS queue and
# EventBridge rules that deliver Spot interruption and rebalance notices, the node IAM role
# and its EC2_LINUX access entry. The Helm install and the NodePool/EC2NodeClass manifests
# live in kustomize/ (they select subnets and the node security group by the
# karpenter.sh/discovery tag set in vpc.tf and eks.tf).
module "karpenter" {
  #checkov:skip=CKV_TF_1:Registry module pinned to its current major with "~>" (project policy): terraform-aws-modules releases are immutable tags, upgrades within the major are reviewed in the plan.
  source  = "terraform-aws-modules/eks/aws//modules/karpenter"
  version = "~> 21.0"

  cluster_name = module.eks.cluster_name

  # titanic-<env>-* names: inside the Terraform role's IAM scope; both roles carry the
  # permissions boundary (iam.tf), which allows what the controller's policy needs.
  iam_role_name                     = "${local.name}-karpenter"
  iam_role_use_name_prefix          = false
  iam_policy_name                   = "${local.name}-karpenter"
  iam_policy_use_name_prefix        = false
  iam_role_permissions_boundary_arn = local.permissions_boundary_arn

  namespace       = "kube-system"
  service_account = "karpenter"

  queue_name = "${local.name}-karpenter"

  node_iam_role_name                 = "${local.name}-karpenter-node"
  node_iam_role_use_name_prefix      = false
  node_iam_role_permissions_boundary = local.permissions_boundary_arn

  # EC2_LINUX access entry for the node role, so its nodes can join the cluster.
  create_access_entry = true
  access_entry_type   = "EC2_LINUX"

  tags = local.tags
}
