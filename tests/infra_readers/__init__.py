"""The small parsers and evaluators the infrastructure tests read the deployment files with: HCL and
Terraform, Kubernetes manifests, the Dockerfile, PromQL, IAM policies, the ECR lifecycle policy
(tested in tests/test_infra_readers.py and tests/test_policy_evaluators.py)."""
