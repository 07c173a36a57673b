"""Static checks of terraform/: parse, structure, security invariants, checkov, fmt; the IAM
policies evaluated for what each role of each environment may do; the ECR lifecycle policy run on a
year of synthetic repository history.

There is no AWS access (and no registry access) here, so `terraform init/validate/plan`
cannot run; the GitHub workflow runs them. These tests cover what can be checked offline.
"""

import json
import re
import subprocess

import hcl2
import pytest
import yaml

from tests.harness import REPO, tool_path
from tests.infra_readers import ecr_lifecycle, iam
from tests.infra_readers import terraform as tf
from tests.infra_readers.ecr_lifecycle import Image
from tests.infra_readers.hcl import blocks, code_without_comments, merged_locals, strip_meta, typed_blocks
from tests.infra_readers.terraform import ACCOUNT, REGION, STATE_BUCKET, block_text, caller_vars, other, run_terraform

pytestmark = pytest.mark.infra

TF_DIR = REPO / "terraform"
TF_FILES = sorted(TF_DIR.glob("*.tf"))
TFVARS_FILES = sorted((TF_DIR / "envs").glob("*.tfvars"))

# Current majors of the terraform-aws-modules registry modules.
MODULE_MAJORS = {
    "terraform-aws-modules/vpc/aws": 6,
    "terraform-aws-modules/eks/aws": 21,
    "terraform-aws-modules/rds/aws": 7,
    "terraform-aws-modules/iam/aws": 6,
    "terraform-aws-modules/ecr/aws": 3,
    "terraform-aws-modules/eks-pod-identity/aws": 2,
}

# Each module that creates IAM roles, and the inputs that give them the permissions boundary.
ROLE_BOUNDARY_INPUTS = {
    "terraform-aws-modules/iam/aws//modules/iam-role": ["permissions_boundary"],
    "terraform-aws-modules/eks-pod-identity/aws": ["permissions_boundary_arn"],
    "terraform-aws-modules/eks/aws": ["iam_role_permissions_boundary"],
    "terraform-aws-modules/eks/aws//modules/karpenter": [
        "iam_role_permissions_boundary_arn",
        "node_iam_role_permissions_boundary",
    ],
}
# Modules that create no role with the inputs given here (asserted below).
ROLELESS_MODULES = {
    "terraform-aws-modules/vpc/aws",
    "terraform-aws-modules/rds/aws",
    "terraform-aws-modules/ecr/aws",
}

# The floors of the module majors, from their versions.tf at the newest release of each major
# (terraform-aws-modules/*: rds 7.1 needs Terraform 1.11.1; rds, iam, eks, eks-pod-identity need aws 6.28).
TERRAFORM_FLOOR = (1, 11, 1)
AWS_PROVIDER_FLOOR = (6, 28)

LITERAL_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:")
ACCOUNT_ID = re.compile(r"(?<![0-9A-Za-z])[0-9]{12}(?![0-9A-Za-z])")
# A literal string assigned to something named like a credential.
SECRET_ASSIGNMENT = re.compile(
    r"""^\s*[\w-]*(password|passwd|secret|token|api_key|access_key)[\w-]*\s*=\s*"[^"$]{6,}""",
    re.IGNORECASE | re.MULTILINE,
)
CHECKOV_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(:?)(.*)")


@pytest.fixture(scope="module")
def parsed():
    return tf.parsed()


@pytest.fixture(scope="module")
def variables(parsed):
    return blocks(parsed, "variable")


@pytest.fixture(scope="module")
def modules(parsed):
    return blocks(parsed, "module")


@pytest.fixture(scope="module")
def resources(parsed):
    return typed_blocks(parsed, "resource")


# --------------------------------------------------------------------------- layout and parsing


def test_layout():
    names = {p.name for p in TF_FILES}
    for required in ("versions.tf", "backend.tf", "main.tf", "variables.tf", "outputs.tf"):
        assert required in names
    assert {p.name for p in TFVARS_FILES} == {"dev.tfvars", "prod.tfvars"}
    assert (TF_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", TF_FILES + TFVARS_FILES, ids=lambda p: p.name)
def test_every_file_parses(path):
    with path.open() as fh:
        assert hcl2.load(fh) is not None


def test_main_opens_with_locals_name_azs_tags(parsed):
    first_block = re.search(r"^(\w+)", code_without_comments(TF_DIR / "main.tf").lstrip(), re.M)
    assert first_block and first_block.group(1) == "locals"
    local_values = merged_locals(parsed)
    for key in ("name", "azs", "tags"):
        assert key in local_values


def version_bounds(constraint):
    """(lower, upper) of a constraint written ">= X.Y[.Z], < N.0[.0]", as tuples of ints."""
    match = re.fullmatch(r">= ([\d.]+), < ([\d.]+)", constraint)
    assert match, f"{constraint!r}: state a floor and an upper bound below the next major"
    return tuple(tuple(int(p) for p in v.split(".")) for v in match.groups())


def test_versions_and_backend(parsed):
    terraform = [strip_meta(t) for doc in parsed.values() for t in doc.get("terraform", [])]
    required_version = next(t["required_version"] for t in terraform if "required_version" in t)
    lower, upper = version_bounds(required_version)
    assert lower >= TERRAFORM_FLOOR and upper[0] == lower[0] + 1 and not any(upper[1:]), required_version
    providers = next(t["required_providers"] for t in terraform if "required_providers" in t)[0]
    for name, floor in (("aws", AWS_PROVIDER_FLOOR), ("random", (3, 7))):
        lower, upper = version_bounds(providers[name]["version"])
        assert lower >= floor and upper[0] == lower[0] + 1 and not any(upper[1:]), providers[name]
    backend = next(t["backend"] for t in terraform if "backend" in t)[0]
    s3 = backend["s3"]
    assert s3["use_lockfile"] is True
    assert s3["encrypt"] is True
    # Bucket and key come from -backend-config, never from code.
    assert "bucket" not in s3
    assert "key" not in s3


# --------------------------------------------------------------------------- modules


def test_registry_modules_pinned_at_current_major(modules):
    assert modules, "no modules found"
    seen = set()
    for label, body in modules.items():
        source = body["source"]
        if source.startswith("./") or source.startswith("../"):
            continue
        registry = source.split("//")[0]
        assert registry in MODULE_MAJORS, f"module {label}: unexpected source {source}"
        version = body.get("version", "")
        match = re.fullmatch(r"~> (\d+)\.\d+", version)
        assert match, f"module {label}: version {version!r} must be '~> MAJOR.MINOR'"
        assert int(match.group(1)) == MODULE_MAJORS[registry], f"module {label}: {version}"
        seen.add(registry)
    assert seen == set(MODULE_MAJORS), f"unused expected modules: {set(MODULE_MAJORS) - seen}"


def test_common_tags_applied(parsed, modules):
    tags = merged_locals(parsed)["tags"]
    for key in ("Project", "Environment", "ManagedBy"):
        assert key in tags
    provider = blocks(parsed, "provider")["aws"]
    assert provider["default_tags"][0]["tags"] == "local.tags"
    # What both environments use is tagged Environment = shared: neither one's isolation denies it.
    assert merged_locals(parsed)["shared_tags"] == 'merge(local.tags, {Environment = "shared"})'
    for label, body in modules.items():
        expected = "local.shared_tags" if label == "ecr" else "local.tags"
        assert body.get("tags") == expected, f"module {label} does not pass tags = {expected}"
    provider = typed_blocks(parsed, "resource")[("aws_iam_openid_connect_provider", "github")]
    assert provider["tags"] == "local.shared_tags"


def test_the_github_oidc_provider_has_no_thumbprint_to_rotate(parsed):
    """IAM checks GitHub's endpoint against its trusted root CAs; a thumbprint taken from the
    certificate (the iam-oidc-provider module's data.tls_certificate) changes at GitHub's next
    rotation, and updating it is denied to every role (DenySharedResourceChanges)."""
    provider = typed_blocks(parsed, "resource")[("aws_iam_openid_connect_provider", "github")]
    assert "thumbprint_list" not in provider
    assert provider["client_id_list"] == ["sts.amazonaws.com"]
    assert provider["count"] == "var.create_shared_resources ? 1 : 0"
    assert not any("iam-oidc-provider" in body["source"] for body in blocks(parsed, "module").values())
    assert not typed_blocks(parsed, "data").keys() & {("tls_certificate", k) for _, k in typed_blocks(parsed, "data")}
    # The provider already created by the module is moved, not replaced.
    moved = [strip_meta(m) for doc in parsed.values() for m in doc.get("moved", [])]
    assert {
        "from": "module.github_oidc_provider[0].aws_iam_openid_connect_provider.this[0]",
        "to": "aws_iam_openid_connect_provider.github[0]",
    } in moved


# --------------------------------------------------------------------------- variables, outputs, tfvars


def test_every_variable_typed_and_described(variables):
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"


def test_every_output_described(parsed):
    outputs = blocks(parsed, "output")
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} has no description"
    required = {
        "ecr_repository_url",
        "cluster_name",
        "cluster_endpoint",
        "kubernetes_version",
        "deploy_role_arn",
        "image_push_role_arn",
        "terraform_role_arn",
        "terraform_plan_role_arn",
        "app_role_arn",
        "migrate_role_arn",
        "external_dns_role_arn",
        "db_resource_id",
        "acm_certificate_arn",
        "public_hostname",
        "db_endpoint",
        "db_address",
        "db_name",
        "db_master_user_secret_arn",
        "django_secret_key_secret_arn",
        "external_secrets_role_arn",
        "lb_controller_role_arn",
        "vpc_cidr",
        "database_subnets_cidr_blocks",
        "region",
    }
    assert required <= set(outputs), f"missing outputs: {required - set(outputs)}"


@pytest.mark.parametrize("path", TFVARS_FILES, ids=lambda p: p.name)
def test_tfvars_set_only_declared_variables(path, variables):
    with path.open() as fh:
        values = strip_meta(hcl2.load(fh))
    undeclared = set(values) - set(variables)
    assert not undeclared, f"{path.name} sets undeclared variables {undeclared}"
    assert values["environment"] == path.stem


def test_environment_differences():
    def load(name):
        with (TF_DIR / "envs" / name).open() as fh:
            return strip_meta(hcl2.load(fh))

    dev, prod = load("dev.tfvars"), load("prod.tfvars")
    assert (dev["node_min_size"], dev["node_max_size"]) == (1, 3)
    assert prod["db_multi_az"] is True
    assert prod["db_deletion_protection"] is True
    assert dev["db_multi_az"] is False
    assert dev["single_nat_gateway"] is True
    assert prod["single_nat_gateway"] is False
    # Destroying prod's database keeps its point-in-time backups.
    assert prod["db_keep_automated_backups"] is True
    # Two on-demand system nodes in prod: one node's loss leaves CoreDNS and Karpenter running.
    assert prod["node_min_size"] >= 2
    # Exactly one environment owns the account-wide OIDC provider and ECR repository.
    assert dev["create_shared_resources"] is True
    assert prod["create_shared_resources"] is False


# --------------------------------------------------------------------------- no secrets, ids or ARNs in code


def test_detectors_catch_what_they_should():
    assert LITERAL_ARN.search('role = "arn:aws:iam::123456789012:role/x"')
    assert not LITERAL_ARN.search('"arn:${local.partition}:eks::aws:cluster-access-policy/X"')
    assert ACCOUNT_ID.search('account = "123456789012"')
    assert not ACCOUNT_ID.search("cidr = 10.10.0.0/16")
    assert SECRET_ASSIGNMENT.search('  master_password = "hunter2hunter2"')  # pragma: allowlist secret
    assert not SECRET_ASSIGNMENT.search("  secret_string_wo = ephemeral.random_password.x.result")


@pytest.mark.parametrize("path", TF_FILES + TFVARS_FILES, ids=lambda p: p.name)
def test_no_account_ids_arns_or_secrets(path):
    code = code_without_comments(path)
    assert not ACCOUNT_ID.search(code), f"{path.name}: hard-coded 12-digit account id"
    assert not LITERAL_ARN.search(code), f"{path.name}: literal ARN (build it from the partition)"
    assert not SECRET_ASSIGNMENT.search(code), f"{path.name}: literal credential"


def test_no_secret_reaches_state(parsed, resources, modules):
    # A random_password *resource* would store its value in state; only the ephemeral one may exist.
    assert ("random_password", "django_secret_key") in typed_blocks(parsed, "ephemeral")
    assert not any(rtype in ("random_password", "random_string") for rtype, _ in resources)
    version = resources[("aws_secretsmanager_secret_version", "django_secret_key")]
    ephemeral_value = "ephemeral.random_password.django_secret_key.result"
    assert version["secret_string_wo"] == ephemeral_value
    assert "secret_string_wo_version" in version
    assert "secret_string" not in version
    secret = resources[("aws_secretsmanager_secret", "django_secret_key")]
    assert secret["name"] == "titanic/${var.environment}/django-secret-key"
    db = modules["db"]
    assert db["manage_master_user_password"] is True
    assert not {k for k in db if "password" in k and "master_user_password" not in k}


# --------------------------------------------------------------------------- what the issue asks for


def addon_configuration(modules, name):
    """An add-on's configuration_values, jsonencode(...) as python-hcl2 gives it, in one line."""
    return re.sub(r"\s+", " ", modules["eks"]["addons"][name].get("configuration_values", ""))


def test_pod_enis_carry_the_environment_tag(modules):
    """The VPC CNI tags the ENIs it attaches for pods with its own keys only (amazon-vpc-cni-k8s,
    pkg/awsutils): ADDITIONAL_ENI_TAGS adds Environment, which the other environment's isolation
    denies by (aws:ResourceTag/Environment)."""
    configuration = addon_configuration(modules, "vpc-cni")
    assert configuration == (
        'jsonencode({enableNetworkPolicy = "true", '
        "env = {ADDITIONAL_ENI_TAGS = jsonencode({Environment = var.environment})}})"
    )


def test_critical_addons_stay_on_the_on_demand_system_nodes(modules):
    """The system group has no taint: without a node selector CoreDNS and metrics-server may be
    rescheduled onto Karpenter's Spot nodes."""
    for addon in ("coredns", "metrics-server"):
        assert addon_configuration(modules, addon) == "jsonencode({nodeSelector = local.system_node_selector})", addon


def test_eks_cluster_and_node_group(modules, variables):
    assert variables["kubernetes_version"]["default"] == "1.35"
    eks = modules["eks"]
    assert eks["kubernetes_version"] == "var.kubernetes_version"
    assert eks["authentication_mode"] == "API"
    assert set(eks["enabled_log_types"]) >= {"api", "audit", "authenticator"}
    addons = eks["addons"]
    for addon in ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "amazon-cloudwatch-observability"):
        assert addon in addons
    # The system pool (CoreDNS, Karpenter, the controllers) is on-demand: a Spot interruption
    # cannot take DNS and node autoscaling down together. Karpenter's NodePool adds Spot nodes.
    (group,) = eks["eks_managed_node_groups"].values()
    assert group["ami_type"] == "AL2023_ARM_64_STANDARD"
    assert group["capacity_type"] == "ON_DEMAND"
    assert group["labels"] == "local.system_node_selector"
    assert merged_locals(tf.parsed())["system_node_selector"] == {"titanic.io/pool": "system"}
    assert "taints" not in group
    assert all(re.match(r"^[a-z]+\d+g", t) for t in variables["node_instance_types"]["default"])


ADMIN_ENTRIES = 'for name, arn in var.cluster_admin_arns : "admin-${name}" =>'


def access_entries(modules):
    # access_entries is a merge() expression; python-hcl2 returns it as text.
    return re.sub(r"\s+", " ", modules["eks"]["access_entries"])


def test_deploy_access_is_namespace_scoped_plus_the_deployers_group(modules):
    deploy = access_entries(modules).split(ADMIN_ENTRIES)[0]
    assert 'principal_arn = module.github_role["deploy"].arn' in deploy
    assert "AmazonEKSEditPolicy" in deploy
    assert 'type = "namespace", namespaces = [local.app_namespace]' in deploy
    assert "ClusterAdmin" not in deploy
    # The group kustomize/ binds its Roles/ClusterRoles to: the access policy is a fixed set.
    assert 'kubernetes_groups = ["titanic-deployers"]' in deploy


def test_admin_access_entries_are_keyed_by_name(modules, variables):
    entries = access_entries(modules)
    assert ADMIN_ENTRIES in entries
    assert "AmazonEKSClusterAdminPolicy" in entries.split(ADMIN_ENTRIES)[1]
    admins = variables["cluster_admin_arns"]
    assert admins["type"] == "map(string)"
    # Required: no default, so an apply that forgets it stops instead of deleting the entries.
    assert "default" not in admins


def test_kms_key_administrators_are_explicit(modules):
    # The module's default is the caller of each apply, which flips the key policy.
    assert modules["eks"]["kms_key_administrators"] == ['module.github_role["terraform"].arn']


def test_rds(modules, resources, variables):
    db = modules["db"]
    assert db["engine"] == "postgres"
    assert int(variables["db_engine_version"]["default"].split(".")[0]) >= 16
    assert variables["db_instance_class"]["default"].startswith("db.t4g.")
    assert db["storage_encrypted"] is True
    assert db["publicly_accessible"] is False
    assert db["db_name"] == "titanic"
    assert db["username"] == "titanic"
    assert db["port"] == 5432
    assert db["performance_insights_enabled"] is True
    assert db["multi_az"] == "var.db_multi_az"
    assert db["deletion_protection"] == "var.db_deletion_protection"
    assert db["delete_automated_backups"] == "!var.db_keep_automated_backups"
    assert variables["db_keep_automated_backups"]["default"] is True
    # Workloads log in with IAM tokens (rds-db:connect), not the rotating master password.
    assert db["iam_database_authentication_enabled"] is True
    assert variables["db_backup_retention_days"]["default"] == 7
    assert {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"} in db["parameters"]
    assert db["vpc_security_group_ids"] == ["aws_security_group.db.id"]
    rule = resources[("aws_vpc_security_group_ingress_rule", "db_from_nodes")]
    assert rule["referenced_security_group_id"] == "module.eks.node_security_group_id"
    assert (rule["from_port"], rule["to_port"]) == (5432, 5432)
    ingress = [k for k in resources if k[0] in ("aws_vpc_security_group_ingress_rule", "aws_security_group_rule")]
    assert ingress == [("aws_vpc_security_group_ingress_rule", "db_from_nodes")]


def test_db_security_group_is_replaced_before_it_is_destroyed(resources):
    group = resources[("aws_security_group", "db")]
    assert "name" not in group
    assert group["name_prefix"] == "${local.name}-db-"
    assert group["lifecycle"] == [{"create_before_destroy": True}]


def test_ecr(modules):
    ecr = modules["ecr"]
    assert ecr["repository_name"] == "titanic-api"
    assert ecr["repository_image_tag_mutability"] == "IMMUTABLE"
    assert ecr["repository_image_scan_on_push"] is True
    # The policy Terraform sends is the file the lifecycle tests below evaluate.
    assert ecr["repository_lifecycle_policy"] == 'file("${path.module}/ecr-lifecycle-policy.json")'


def test_github_oidc_subjects_are_exact(parsed, modules):
    """Every GitHub role, of every environment, trusts exact subjects (StringEquals), never a
    wildcard; what each role trusts is checked job by job in tests/test_workflows.py."""
    for env in tf.ENVIRONMENTS:
        for role in tf.roles(env).values():
            if role.subjects is not None:
                assert role.subjects, f"{role}: trusts no subject"
                assert not any("*" in s or "?" in s for s in role.subjects), f"{role}: {role.subjects}"
    assert merged_locals(parsed)["github_subject_prefix"] == "repo:${var.github_repository}"
    for label, body in modules.items():
        if body.get("enable_github_oidc"):
            assert "oidc_wildcard_subjects" not in body, f"module {label}"
    assert modules["github_role"]["oidc_subjects"] == "each.value.subjects"


def test_external_secrets_reads_only_the_django_secret_key(parsed, modules):
    docs = typed_blocks(parsed, "data")
    (statement,) = docs[("aws_iam_policy_document", "external_secrets")]["statement"]
    assert set(statement["actions"]) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    # Not the RDS master secret: the app logs in with IAM.
    assert statement["resources"] == ["aws_secretsmanager_secret.django_secret_key.arn"]
    (association,) = modules["external_secrets_pod_identity"]["associations"].values()
    assert (association["namespace"], association["service_account"]) == ("external-secrets", "external-secrets")
    (association,) = modules["lb_controller_pod_identity"]["associations"].values()
    assert (association["namespace"], association["service_account"]) == ("kube-system", "aws-load-balancer-controller")


def dbuser(env, user):
    return f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{tf.DB_RESOURCE_IDS[env]}/{user}"


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_each_database_identity_connects_as_its_own_user_only(env, modules):
    """Interfaces 1: titanic-<env>/titanic-api -> titanic-<env>-app -> titanic_app, and
    titanic-<env>/titanic-migrate -> titanic-<env>-migrate -> titanic_migrator."""
    roles = tf.roles(env)
    expected = {"app": ("titanic-api", "titanic_app"), "migrate": ("titanic-migrate", "titanic_migrator")}
    render = tf.Renderer(env)
    assert render.resolve("local.db_users") == {
        key: {"service_account": sa, "db_user": user} for key, (sa, user) in expected.items()
    }
    (association,) = modules["db_user_pod_identity"]["associations"].values()
    assert (
        association["namespace"] == "local.app_namespace" and render.resolve("local.app_namespace") == f"titanic-{env}"
    )
    assert association["service_account"] == "each.value.service_account"
    users = ["titanic_app", "titanic_migrator", "titanic"]
    for key, (_sa, user) in expected.items():
        role = roles[f"titanic-{env}-{key}"]
        assert role.known
        allowed = {
            (target_env, u)
            for target_env in tf.ENVIRONMENTS
            for u in users
            if iam.is_allowed(
                iam.request("rds-db:connect", dbuser(target_env, u)), role.identity_policies, role.boundary
            )
        }
        assert allowed == {(env, user)}, f"{role}: {allowed}"
    outputs = blocks(tf.parsed(), "output")
    assert outputs["db_resource_id"]["value"] == "module.db.db_instance_resource_id"
    assert outputs["app_role_arn"]["value"] == 'module.db_user_pod_identity["app"].iam_role_arn'
    assert outputs["migrate_role_arn"]["value"] == 'module.db_user_pod_identity["migrate"].iam_role_arn'


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_external_dns_changes_only_the_public_host_in_its_zone(env, modules):
    role = tf.roles(env)[f"titanic-{env}-external-dns"]
    (association,) = modules["external_dns_pod_identity"]["associations"].values()
    assert (association["namespace"], association["service_account"]) == ("external-dns", "external-dns")
    host, zone = tf.HOSTS[env], f"arn:aws:route53:::hostedzone/{tf.ZONES[env]}"

    def change(names, types=("A", "TXT"), target=zone):
        context = {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": list(names),
            "route53:ChangeResourceRecordSetsRecordTypes": list(types),
            "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
        }
        return iam.is_allowed(
            iam.request("route53:ChangeResourceRecordSets", target, None, **context),
            role.identity_policies,
            role.boundary,
        )

    # The host and the TXT ownership record ExternalDNS writes beside it (a-<host>).
    assert change([host, f"a-{host}"])
    assert change([f"aaaa-{host}"], types=("TXT",))
    assert not change([host, "www.example.com"])
    assert not change([tf.HOSTS[other(env)]])
    assert not change([host], types=("NS",))
    assert not change([host], target=f"arn:aws:route53:::hostedzone/{tf.ZONES[other(env)]}")
    for action in ("route53:ListResourceRecordSets", "route53:ListTagsForResources"):
        assert iam.is_allowed(iam.request(action, zone), role.identity_policies, role.boundary)
    assert iam.is_allowed(iam.request("route53:ListHostedZones", "*"), role.identity_policies, role.boundary)
    assert (
        blocks(tf.parsed(), "output")["external_dns_role_arn"]["value"]
        == "module.external_dns_pod_identity.iam_role_arn"
    )


def test_certificate_is_validated_by_dns_in_the_zone(resources, variables):
    certificate = resources[("aws_acm_certificate", "public")]
    assert (certificate["domain_name"], certificate["validation_method"]) == ("var.public_hostname", "DNS")
    assert certificate["lifecycle"] == [{"create_before_destroy": True}]
    record = resources[("aws_route53_record", "certificate_validation")]
    assert record["zone_id"] == "var.route53_zone_id"
    validation = resources[("aws_acm_certificate_validation", "public")]
    assert validation["certificate_arn"] == "aws_acm_certificate.public.arn"
    # The output waits for issuance: it names the validated certificate.
    outputs = blocks(tf.parsed(), "output")
    assert outputs["acm_certificate_arn"]["value"] == "aws_acm_certificate_validation.public.certificate_arn"
    assert outputs["public_hostname"]["value"] == "var.public_hostname"
    for name in ("public_hostname", "route53_zone_id"):
        assert "default" not in variables[name], f"{name} is required"


def test_log_retention_follows_the_environment(resources, modules):
    assert modules["eks"]["cloudwatch_log_group_retention_in_days"] == "var.log_retention_days"
    assert modules["db"]["cloudwatch_log_group_retention_in_days"] == "var.log_retention_days"
    groups = [body for (rtype, _), body in resources.items() if rtype == "aws_cloudwatch_log_group"]
    assert groups
    assert all(g["retention_in_days"] == "var.log_retention_days" for g in groups)


def test_waf_is_optional_and_rate_limited(resources):
    acl = resources[("aws_wafv2_web_acl", "alb")]
    assert acl["count"] == "var.enable_waf ? 1 : 0"
    assert any("rate_based_statement" in rule["statement"][0] for rule in acl["rule"])


# --------------------------------------------------------------------------- scanners


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_checkov_skip_is_justified(path):
    for line in path.read_text().splitlines():
        match = CHECKOV_SKIP.search(line)
        if match:
            reason = match.group(3).strip() if match.group(2) == ":" else ""
            assert len(reason) >= 20, f"{path.name}: unjustified skip: {line.strip()}"


def test_checkov_has_no_failed_checks():
    cmd = [
        tool_path("checkov"),
        "--directory", str(TF_DIR),
        "--framework", "terraform",
        "--skip-download",
        "--download-external-modules", "false",
        "--compact",
        "--quiet",
        "--output", "json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.stdout.strip(), f"checkov printed nothing: {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r["results"].get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)


def test_terraform_fmt():
    proc = run_terraform("fmt", "-check", "-recursive", "-diff", str(TF_DIR), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def variables_only_root(tmp_path_factory):
    """variables.tf alone: needs no provider or module, so Terraform can plan it offline."""
    root = tmp_path_factory.mktemp("tfvars")
    (root / "variables.tf").write_text((TF_DIR / "variables.tf").read_text())
    proc = run_terraform("init", "-backend=false", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def plan_variables(root, env, *extra):
    return run_terraform(
        "plan", "-lock=false", f"-var-file={TF_DIR / 'envs' / f'{env}.tfvars'}", *caller_vars(env), *extra, cwd=root
    )


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_tfvars_pass_variable_types_and_validations(variables_only_root, env):
    proc = plan_variables(variables_only_root, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("github_repository=owner/*", "owner/name"),
        ("db_engine_version=15", "PostgreSQL 16 or newer"),
        ("node_max_size=0", "node_max_size must be >= node_min_size"),
        ('node_instance_types=["m7i.large","m6i.large"]', "Graviton"),
        ("db_instance_class=db.m7g.large", "db.t4g"),
        ("log_retention_days=10", "CloudWatch Logs accepts"),
        ("environment=staging", "environment must be"),
        ("cluster_admin_arns={}", "must name at least one cluster administrator"),
        ('cluster_admin_arns={Alice = "arn:aws:iam::111122223333:role/admin"}', "short lower-case names"),
        ('cluster_admin_arns={alice = "arn:aws:iam::111122223333:group/admins"}', "IAM role or user ARNs"),
        ('cluster_admin_arns=["arn:aws:iam::111122223333:role/admin"]', "map of string required"),
        ("public_hostname=https://titanic.example.com", "lower-case DNS name"),
        ("public_hostname=*.example.com", "lower-case DNS name"),
        ("route53_zone_id=example.com", "hosted zone id"),
    ],
)
def test_variable_validations_reject_bad_values(variables_only_root, override, message):
    proc = plan_variables(variables_only_root, "dev", "-var", override)
    assert proc.returncode != 0
    assert message in re.sub(r"\s+", " ", proc.stderr + proc.stdout)


@pytest.mark.parametrize("name", ["cluster_admin_arns", "public_hostname", "route53_zone_id"])
def test_caller_variables_are_required(variables_only_root, name):
    """Fails closed: an apply without the admins stops instead of deleting their access entries,
    one without the host or zone instead of guessing them."""
    given = caller_vars("dev")
    without = [
        a for pair in zip(given[::2], given[1::2], strict=True) if not pair[1].startswith(name + "=") for a in pair
    ]
    proc = run_terraform(
        "plan", "-lock=false", f"-var-file={TF_DIR / 'envs' / 'dev.tfvars'}", *without, cwd=variables_only_root
    )
    assert proc.returncode != 0
    message = re.sub(r"\s+", " ", proc.stderr + proc.stdout)
    assert "No value for required variable" in message and f'variable "{name}"' in message


# --------------------------------------------------------------------------- what Terraform itself evaluates


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """main.tf's naming locals and iam.tf's GitHub subjects, evaluated by Terraform for dev and prod
    (no provider needed): the values the rendering below stands in for must be Terraform's."""
    naming = block_text(TF_DIR / "main.tf", "other_environment =")
    subjects = block_text(TF_DIR / "iam.tf", "github_subjects_by_environment = {")
    stand_ins = '\nlocals {\n  partition = "aws"\n  account_id = "111122223333"\n  state_bucket_arn_unused = ""\n}\n'
    return tf.evaluate_locals(
        tmp_path_factory.mktemp("locals"),
        naming + "\n" + subjects.replace("  cluster_arn", "  unused_cluster_arn") + stand_ins,
        {
            "name": "local.name",
            "other_environment": "local.other_environment",
            "other_name": "local.other_name",
            "app_namespace": "local.app_namespace",
            "other_alb_name_prefix": "local.other_alb_name_prefix",
            "subjects": "local.github_subjects",
        },
    )


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_the_rendering_agrees_with_terraform(evaluated, env):
    render = tf.Renderer(env)
    values = evaluated[env]
    for name in ("name", "other_environment", "other_name", "app_namespace", "other_alb_name_prefix"):
        assert render.resolve(f"local.{name}") == values[name], name
    assert values["other_environment"] == other(env)
    rendered = {name: role.subjects for name, role in tf.roles(env).items() if role.subjects is not None}
    assert rendered == {
        f"titanic-{env}-{key}": subjects
        for key, subjects in values["subjects"].items()
        if key != "image-push" or tf.tfvars(env)["create_shared_resources"]
    }


def test_pull_requests_get_no_prod_role(evaluated):
    main = "repo:owner/repo:ref:refs/heads/main"
    pull_request = "repo:owner/repo:pull_request"
    dev, prod = evaluated["dev"]["subjects"], evaluated["prod"]["subjects"]
    assert dev["terraform-plan"] == [pull_request, "repo:owner/repo:environment:terraform-plan-dev"]
    # The plan role reads the Django secret (below): prod's trusts its plan job on main only, not
    # every job of main (the image job runs third-party actions with id-token: write).
    assert prod["terraform-plan"] == ["repo:owner/repo:environment:terraform-plan-prod"]
    assert not [role for role, subjects in prod.items() if main in subjects and role != "image-push"]
    assert not [role for role, subjects in prod.items() if pull_request in subjects]
    assert prod["deploy"] == ["repo:owner/repo:environment:prod"]
    assert prod["terraform"] == ["repo:owner/repo:environment:terraform-prod"]
    # Dev's deploy role trusts its deploy job only: tag builds get the push role, main builds too.
    assert dev["deploy"] == ["repo:owner/repo:environment:dev"]
    assert dev["image-push"] == [main, "repo:owner/repo:environment:release"]


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_plan_role_reads_only_its_own_environments_secret(env):
    policy = tf.Renderer(env).policy("terraform_plan")
    readers = [
        s for s in policy["Statement"] if s["Effect"] == "Allow" and any("secretsmanager" in a for a in s["Action"])
    ]
    assert [(s["Action"], s["Resource"]) for s in readers] == [
        (["secretsmanager:GetSecretValue"], [tf.placeholders(env)["aws_secretsmanager_secret.django_secret_key.arn"]])
    ]


# --------------------------------------------------------------------------- IAM policies: boundary, guardrails, lint


@pytest.fixture(scope="module")
def policy_documents(parsed):
    """Every aws_iam_policy_document, rendered for dev (and, under a for_each, for each key)."""
    render = tf.Renderer("dev")
    documents = {}
    for (kind, name), body in typed_blocks(parsed, "data").items():
        if kind != "aws_iam_policy_document":
            continue
        if "for_each" in body:
            for key, value in render.resolve(body["for_each"]).items():
                documents[f"{name}[{key}]"] = tf.Renderer("dev", {"key": key, "value": value}).policy(name)
        else:
            documents[name] = render.policy(name)
    return documents


def statement(policy, sid):
    (found,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    return found


def test_every_role_carries_the_permissions_boundary(parsed, modules, resources):
    assert merged_locals(parsed)["permissions_boundary_arn"] == "aws_iam_policy.permissions_boundary.arn"
    boundary = "local.permissions_boundary_arn"
    for label, body in modules.items():
        source = body["source"]
        if source in ROLELESS_MODULES:
            continue
        assert source in ROLE_BOUNDARY_INPUTS, f"module {label} ({source}): which roles does it create?"
        for key in ROLE_BOUNDARY_INPUTS[source]:
            assert body.get(key) == boundary, f"module {label}: {key} must be {boundary}"
    for name, group in modules["eks"]["eks_managed_node_groups"].items():
        assert group.get("iam_role_permissions_boundary") == boundary, f"node group {name}"
    for key in ("enable_flow_log", "create_flow_log_cloudwatch_iam_role", "create_monitoring_role"):
        assert not any(body.get(key) for body in modules.values()), f"{key} would create a role without the boundary"
    for (rtype, name), body in resources.items():
        if rtype == "aws_iam_role":
            assert body.get("permissions_boundary") == boundary, f"aws_iam_role.{name}"
    role = modules["github_role"]
    assert role["permissions_boundary"] == boundary


def test_the_apply_role_cannot_escape_the_boundary(policy_documents):
    boundary_arn = tf.boundary_arn("dev")
    for name in ("terraform_apply", "permissions_boundary"):
        policy = policy_documents[name]
        guard = statement(policy, "DenyRolesWithoutTheBoundary")
        assert guard["Effect"] == "Deny"
        assert set(guard["Action"]) == {
            "iam:AttachRolePolicy",
            "iam:CreateRole",
            "iam:PutRolePermissionsBoundary",
            "iam:PutRolePolicy",
        }
        # A negated operator matches when the key is absent: a role without a boundary is denied too.
        assert guard["Condition"] == {"ArnNotEquals": {"iam:PermissionsBoundary": [boundary_arn]}}
        removal = statement(policy, "DenyBoundaryRemovalAndTrustChanges")
        assert (removal["Effect"], removal["Action"], removal["Resource"]) == (
            "Deny",
            ["iam:DeleteRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy"],
            ["*"],
        )
        edits = statement(policy, "DenyBoundaryChanges")
        assert edits["Effect"] == "Deny" and edits["Resource"] == [boundary_arn]
        assert {"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"} <= set(edits["Action"])
    # The apply role: IAM only on this environment's titanic-dev-* roles and policies, listed calls.
    apply = policy_documents["terraform_apply"]
    allowed = [s for s in apply["Statement"] if s["Effect"] == "Allow" and "Action" in s]
    assert not [s["Sid"] for s in allowed if any(a in ("*", "iam:*") for a in s["Action"])]
    roles = statement(apply, "ManageTitanicRoles")
    assert roles["Resource"] == ["arn:aws:iam::111122223333:role/titanic-dev-*"]


# IAM actions on these resources, tried within each boundary: a role holding anything may do no
# more than the apply role, except on the instance profiles Karpenter creates.
IAM_TARGETS = [
    f"arn:aws:iam::{ACCOUNT}:role/titanic-dev-app",
    f"arn:aws:iam::{ACCOUNT}:role/titanic-prod-app",
    f"arn:aws:iam::{ACCOUNT}:role/Admin",
    f"arn:aws:iam::{ACCOUNT}:policy/titanic-dev-karpenter",
    f"arn:aws:iam::{ACCOUNT}:policy/titanic-dev-permissions-boundary",
    f"arn:aws:iam::{ACCOUNT}:user/titanic-dev-someone",
    f"arn:aws:iam::{ACCOUNT}:instance-profile/titanic-dev_123",
    f"arn:aws:iam::{ACCOUNT}:instance-profile/eks-0a1b",
    tf.OIDC_PROVIDER_ARN,
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "*",
]


def test_the_boundary_allows_no_iam_beyond_the_apply_role(policy_documents):
    roles = tf.roles("dev")
    apply, anything = roles["titanic-dev-terraform"], roles["titanic-dev-karpenter"]
    assert not anything.known
    boundary = {"iam:PermissionsBoundary": tf.boundary_arn("dev")}
    own = ("role/titanic-dev-", "policy/titanic-dev-", "instance-profile/titanic-dev_")
    beyond = []
    for action in iam.actions_matching("iam:*"):
        for arn in IAM_TARGETS:
            if arn.rsplit(":", 1)[-1].startswith(own) or (arn != "*" and iam.resource_type(arn) is None):
                continue
            context = {"Environment": "dev"}
            if can(anything, action, arn, context, **boundary) and not can(apply, action, arn, context, **boundary):
                beyond.append((action, arn))
    # Outside this environment's roles, policies and Karpenter's instance profiles, a role holding
    # anything does no IAM the apply role cannot (its reads, lists and service-linked roles).
    assert not beyond, beyond
    boundary_document = policy_documents["permissions_boundary"]
    (everything,) = [s for s in boundary_document["Statement"] if "NotAction" in s and s["Effect"] == "Allow"]
    assert {"iam:*", "organizations:*", "account:*", "rds-db:*", "secretsmanager:GetSecretValue"} <= set(
        everything["NotAction"]
    )
    assert statement(boundary_document, "ReadThisEnvironmentsSecrets")["Resource"] == [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:titanic/dev/*"
    ]
    assert statement(boundary_document, "ConnectToThisEnvironmentsDatabase")["Resource"] == [dbuser("dev", "*")]


def test_every_action_and_condition_key_is_in_the_service_authorization_reference(policy_documents):
    """A misspelt action or condition key matches nothing, so a deny on it would deny nothing."""
    for name, policy in policy_documents.items():
        assert not iam.names_unknown_actions(policy), name
        assert not iam.unknown_condition_keys(policy), name


# Parliament findings accepted, by (issue, statement Sid or flagged actions), each with its reason.
PARLIAMENT_JUSTIFIED = {
    ("CREDENTIALS_EXPOSURE", "ecr:getauthorizationtoken"): (
        "docker login to ECR needs it (no resource-level permissions); the token is only usable on "
        "titanic-api through EcrPushPullTitanicApi"
    ),
    ("INVALID_ARN", "ReadAwsManagedPolicies"): (
        "arn:aws:iam::aws:policy/* is how AWS managed policies are named (account 'aws'); parliament "
        "expects a 12-digit account"
    ),
    ("CREDENTIALS_EXPOSURE", "rds-db:connect"): (
        "IAM database authentication is the point: the token lets the pod log in as its own database "
        "user on this environment's instance only (the resource is that dbuser ARN)"
    ),
    ("PERMISSIONS_MANAGEMENT_ACTIONS", "rds-db:connect"): (
        "the reference files rds-db:connect under permissions management; it grants one login, "
        "scoped to one database user"
    ),
    ("RESOURCE_STAR", "EverythingButIamAndOrganizations"): (
        "the boundary's ceiling for everything but IAM: it grants nothing by itself, each role's own "
        "policies scope the resources"
    ),
    ("RESOURCE_MISMATCH", "IamOfThisEnvironment"): (
        "the boundary's IAM ceiling: iam:* on this environment's roles, policies and Karpenter's "
        "instance profiles (one statement, for the 6,144-character limit); the apply role's own "
        "statements list the calls"
    ),
    ("UNKNOWN_CONDITION_FOR_ACTION", "DenyOtherEnvironmentVpc0"): (
        "ec2:* with ec2:Vpc denies the ec2 actions on resources that carry the key (network "
        "interfaces, security groups, subnets...); for the others the key is absent and ArnEquals "
        "does not match, as intended"
    ),
    ("MALFORMED", "OnlyTheImagePushRoleWrites"): (
        "a repository policy (resource-based: a Principal, no Resource); parliament reads every "
        "document as an identity policy"
    ),
}
# Fragments linted as part of the documents that combine them: terraform_apply_iam (the apply
# role's IAM grants) alone lacks the guardrails terraform_apply adds, so parliament reports the
# permissions management it does within them.
LINTED_AS_PART_OF = {"terraform_apply_iam": "terraform_apply"}


def parliament(policies, tmp_path):
    """Parliament's findings for each named policy (one process for all of them), each keyed by
    (issue, Sid of the flagged statement or its actions)."""
    paths = {}
    for name, policy in policies.items():
        # One statement per line, so a finding's line names its statement. Condition values as the
        # provider writes them: a single value as a string (parliament's Null check expects one).
        lines = []
        for entry in policy["Statement"]:
            conditions = {
                operator: {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in keys.items()}
                for operator, keys in entry.get("Condition", {}).items()
            }
            lines.append(json.dumps({**entry, **({"Condition": conditions} if conditions else {})}))
        path = tmp_path / f"{name}.json"
        path.write_text('{"Version": "2012-10-17", "Statement": [\n' + ",\n".join(lines) + "\n]}")
        paths[str(path)] = name
    proc = subprocess.run(
        [
            tool_path("parliament"),
            "--json",
            "--include-community-auditors",
            "--minimum_severity",
            "INFO",
            "--files",
            ",".join(paths),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == (1 if findings else 0), proc.stderr
    keyed: dict[str, list] = {name: [] for name in policies}
    for finding in findings:
        location = finding["location"]
        name = paths[location["filepath"]]
        if "line" in location:
            where = policies[name]["Statement"][location["line"] - 2]["Sid"]
        else:
            where = ",".join(location.get("actions", []))
        keyed[name].append((finding["issue"], where))
    return keyed


def test_parliament_finds_nothing_unjustified_in_the_iam_policies(policy_documents, tmp_path):
    """Every IAM policy document the Terraform builds, linted (community auditors included)."""
    assert {"deploy", "image_push", "terraform_plan", "terraform_apply", "permissions_boundary", "external_dns"} <= set(
        policy_documents
    )
    assert set(LINTED_AS_PART_OF.values()) <= set(policy_documents)
    found = parliament({k: v for k, v in policy_documents.items() if k not in LINTED_AS_PART_OF}, tmp_path)
    unjustified = {name: [k for k in keys if k not in PARLIAMENT_JUSTIFIED] for name, keys in found.items()}
    assert not {name: keys for name, keys in unjustified.items() if keys}


def test_parliament_reports_what_it_should(tmp_path):
    """The lint can fail: a needless Resource * on iam:PassRole is reported, under its Sid."""
    bad = {"Statement": [{"Sid": "PassAnyRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": ["*"]}]}
    assert ("RESOURCE_STAR", "PassAnyRole") in parliament({"bad": bad}, tmp_path)["bad"]


# IAM quotas ("IAM and AWS STS quotas"): a managed policy (the boundary, the Pod Identity roles'
# custom policies) at most 6,144 characters, a role's inline policies together at most 10,240,
# whitespace not counted. Measured as the provider writes the documents, with the values of this
# test and with the longest values the variables may take.
MANAGED_POLICY_LIMIT, INLINE_POLICIES_LIMIT = 6144, 10240
LONGEST_VALUES = {
    "var.state_bucket": "titanic-tfstate-" + "0" * 47,  # S3's 63-character maximum
    "var.region": "ap-southeast-7",
    "var.route53_zone_id": "Z" + "0" * 31,
    "module.db.db_instance_resource_id": "db-" + "A" * 26,
}


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
@pytest.mark.parametrize("values", ["these", "longest"])
def test_every_policy_fits_iams_size_limits(env, values):
    render = tf.Renderer(env)
    if values == "longest":
        render.values.update(LONGEST_VALUES)
    boundary = render.policy("permissions_boundary")
    assert tf.policy_size(boundary) <= MANAGED_POLICY_LIMIT, tf.policy_size(boundary)
    modules = blocks(tf.parsed(), "module")
    for name in ("external_secrets", "external_dns"):
        assert tf.policy_size(render.policy(name)) <= MANAGED_POLICY_LIMIT, name
    for key, definition in render.resolve("local.github_role_definitions").items():
        scoped = tf.Renderer(env, {"key": key, "value": definition})
        scoped.values.update(render.values)
        inline = [scoped.document(d) for d in scoped.render(modules["github_role"]["source_inline_policy_documents"])]
        assert sum(tf.policy_size(d) for d in inline) <= INLINE_POLICIES_LIMIT, key
    assert tf.policy_size(tf.resource_policies(tf.ECR_REPOSITORY_ARN)[0]) <= INLINE_POLICIES_LIMIT


def test_the_size_is_counted_as_iam_counts_it():
    policy = {"Statement": [{"Sid": "A", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]}
    written = (
        '{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
    )
    assert tf.policy_size(policy) == len(written)


# --------------------------------------------------------------------------- dev cannot change prod (and back)


def attacks_on(target: str, attacker: str):
    """(action, resource ARN, the resource's tags[, request context]) a role of `attacker` could
    try on `target`'s resources, on what both environments share and on the account; every one must
    be denied. The tags are those Terraform's default_tags and the controllers put on these
    resources; a resource whose tags are not documented is tried without any."""
    n, a, r = f"titanic-{target}", ACCOUNT, REGION
    tags = {"Environment": target}
    eni = f"arn:aws:ec2:{r}:{a}:network-interface/eni-0a1b2c3d"
    in_its_vpc = {"ec2:Vpc": f"arn:aws:ec2:{r}:{a}:vpc/{tf.VPC_IDS[target]}"}
    zone = f"arn:aws:route53:::hostedzone/{tf.ZONES[target]}"
    alb = f"arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/k8s-titanic{target[0]}-api-0a1b2c3d4e/0a1b2c3d"
    retained_backup = f"arn:aws:rds:{r}:{a}:auto-backup:ab-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"
    cluster = f"arn:aws:eks:{r}:{a}:cluster/{n}"
    db = f"arn:aws:rds:{r}:{a}:db:{n}"
    secret = f"arn:aws:secretsmanager:{r}:{a}:secret:titanic/{target}/django-secret-key-AbCdEf"
    master_secret = tf.placeholders(target)["module.db.db_instance_master_user_secret_arn"]
    state = f"arn:aws:s3:::{STATE_BUCKET}/titanic/{target}.tfstate"
    shared = {"Environment": "shared"}
    return [
        # An EKS access entry with cluster-admin on the other cluster.
        ("eks:CreateAccessEntry", cluster, tags),
        ("eks:AssociateAccessPolicy", f"arn:aws:eks:{r}:{a}:access-entry/{n}/role/{a}/intruder/0a1b", {}),
        ("eks:UpdateClusterConfig", cluster, tags),
        ("eks:DeleteCluster", cluster, tags),
        ("eks:DescribeCluster", cluster, tags),
        ("eks:CreatePodIdentityAssociation", cluster, tags),
        ("eks:UpdateNodegroupConfig", f"arn:aws:eks:{r}:{a}:nodegroup/{n}/system/0a1b", {}),
        # Its secrets.
        ("secretsmanager:GetSecretValue", secret, tags),
        ("secretsmanager:PutSecretValue", secret, tags),
        ("secretsmanager:DeleteSecret", secret, tags),
        ("secretsmanager:GetSecretValue", master_secret, {}),
        # Its database: deletion protection, snapshots (a copy of the data), logins.
        ("rds:ModifyDBInstance", db, tags),
        ("rds:DeleteDBInstance", db, tags),
        ("rds:CreateDBSnapshot", db, tags),
        ("rds:DeleteDBSnapshot", f"arn:aws:rds:{r}:{a}:snapshot:rds:{n}-2026-01-01-03-00", {}),
        # The backups prod keeps after its instance is deleted (no name, no documented tags): deleted,
        # or restored into an instance dev can read.
        ("rds:DeleteDBInstanceAutomatedBackup", retained_backup, {}),
        ("rds:RestoreDBInstanceToPointInTime", retained_backup, {}),
        ("rds-db:connect", dbuser(target, "titanic_app"), {}),
        ("rds-db:connect", dbuser(target, "titanic"), {}),
        # Its state and lock.
        ("s3:PutObject", state, {}),
        ("s3:DeleteObject", state, {}),
        ("s3:GetObject", state, {}),
        ("s3:PutObject", state + ".tflock", {}),
        ("s3:DeleteObject", state + ".tflock", {}),
        # Its roles and boundary.
        ("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{a}:role/{n}-terraform", tags),
        ("iam:PutRolePolicy", f"arn:aws:iam::{a}:role/{n}-terraform", tags),
        ("iam:AttachRolePolicy", f"arn:aws:iam::{a}:role/{n}-deploy", tags),
        ("iam:PassRole", f"arn:aws:iam::{a}:role/{n}-app", tags),
        ("sts:AssumeRole", f"arn:aws:iam::{a}:role/{n}-terraform", tags),
        ("iam:CreatePolicyVersion", f"arn:aws:iam::{a}:policy/{n}-permissions-boundary", tags),
        # Its encryption key, network, nodes and load balancers (tagged by Terraform or by the
        # controllers that create them).
        ("kms:ScheduleKeyDeletion", f"arn:aws:kms:{r}:{a}:key/0a1b2c3d-0000-0000-0000-000000000000", tags),
        ("kms:Decrypt", f"arn:aws:kms:{r}:{a}:key/0a1b2c3d-0000-0000-0000-000000000000", tags),
        ("ec2:AuthorizeSecurityGroupIngress", f"arn:aws:ec2:{r}:{a}:security-group/sg-0a1b2c3d", tags),
        ("ec2:TerminateInstances", f"arn:aws:ec2:{r}:{a}:instance/i-0a1b2c3d", {"eks:cluster-name": n}),
        ("ec2:TerminateInstances", f"arn:aws:ec2:{r}:{a}:instance/i-0a1b2c3e", {f"kubernetes.io/cluster/{n}": "owned"}),
        (
            "elasticloadbalancing:DeleteLoadBalancer",
            f"arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/k8s-titanic-0a1b/0a1b2c3d",
            {"elbv2.k8s.aws/cluster": n},
        ),
        ("logs:DeleteLogGroup", f"arn:aws:logs:{r}:{a}:log-group:/aws/eks/{n}/cluster", {}),
        ("sqs:DeleteQueue", f"arn:aws:sqs:{r}:{a}:{n}-karpenter", {}),
        ("wafv2:DeleteWebACL", f"arn:aws:wafv2:{r}:{a}:regional/webacl/{n}-alb/0a1b", {}),
        ("acm:DeleteCertificate", f"arn:aws:acm:{r}:{a}:certificate/0a1b2c3d", tags),
        # Its DNS: records, and what else writes the zone (a traffic policy instance creates records).
        ("route53:ChangeResourceRecordSets", zone, {}),
        ("route53:CreateTrafficPolicyInstance", zone, {}),
        ("route53:CreateKeySigningKey", zone, {}),
        ("route53:DisableHostedZoneDNSSEC", zone, {}),
        ("route53:AssociateVPCWithHostedZone", zone, {}),
        ("route53:ChangeTagsForResource", zone, {}),
        # Its WAF: removed from or replaced on its ALB (authorised without tags, or on nothing).
        ("wafv2:DisassociateWebACL", alb, {"elbv2.k8s.aws/cluster": n}),
        ("wafv2:AssociateWebACL", alb, {"elbv2.k8s.aws/cluster": n}),
        # Its pods' network interfaces: tagged by the VPC CNI (ADDITIONAL_ENI_TAGS), or found by
        # their VPC when created before the CNI tagged them.
        ("ec2:UnassignPrivateIpAddresses", eni, tags),
        ("ec2:UnassignPrivateIpAddresses", eni, {}, in_its_vpc),
        ("ec2:ModifyNetworkInterfaceAttribute", eni, {}, in_its_vpc),
        ("ec2:DeleteNetworkInterface", eni, {}, in_its_vpc),
        # Its nodes' instance profiles: EKS's for the managed node group, Karpenter's (with and
        # without the path Karpenter 1.x gives them).
        ("iam:RemoveRoleFromInstanceProfile", f"arn:aws:iam::{a}:instance-profile/eks-0a1b2c3d-0000-0000-0000", {}),
        ("iam:AddRoleToInstanceProfile", f"arn:aws:iam::{a}:instance-profile/{n}_1234567890", {}),
        (
            "iam:DeleteInstanceProfile",
            f"arn:aws:iam::{a}:instance-profile/karpenter/{r}/{n}/0a1b-2c3d/{n}_1234567890",
            {},
        ),
        # Its logs, read (a Logs Insights query, events) or streamed out account-wide.
        ("logs:StartQuery", f"arn:aws:logs:{r}:{a}:log-group:/aws/containerinsights/{n}/application", {}),
        ("logs:FilterLogEvents", f"arn:aws:logs:{r}:{a}:log-group:/aws/rds/instance/{n}/postgresql", {}),
        ("logs:GetLogEvents", f"arn:aws:logs:{r}:{a}:log-group:/aws/eks/{n}/cluster:log-stream:kube-apiserver", {}),
        ("logs:PutAccountPolicy", "*", {}),
        # What both share: the GitHub OIDC provider, the image repository (prod's images), the state bucket.
        ("iam:DeleteOpenIDConnectProvider", tf.OIDC_PROVIDER_ARN, shared),
        ("iam:UpdateOpenIDConnectProviderThumbprint", tf.OIDC_PROVIDER_ARN, shared),
        ("ecr:BatchDeleteImage", tf.ECR_REPOSITORY_ARN, shared),
        ("ecr:PutLifecyclePolicy", tf.ECR_REPOSITORY_ARN, shared),
        ("ecr:DeleteRepository", tf.ECR_REPOSITORY_ARN, shared),
        ("ecr:SetRepositoryPolicy", tf.ECR_REPOSITORY_ARN, shared),
        ("s3:PutBucketPolicy", f"arn:aws:s3:::{STATE_BUCKET}", {}),
        ("s3:DeleteBucket", f"arn:aws:s3:::{STATE_BUCKET}", {}),
        ("s3:DeleteObjectVersion", f"arn:aws:s3:::{STATE_BUCKET}/titanic/{attacker}.tfstate", {}),
        # An access point on the state bucket: requests through it are authorised on its ARN.
        ("s3:CreateAccessPoint", f"arn:aws:s3:{r}:{a}:accesspoint/state", {}),
        # Shedding the boundary: any role of the account that trusts the account itself.
        ("sts:AssumeRole", f"arn:aws:iam::{a}:role/Admin", {}),
    ]


def allowed_attacks(role, target, attacker):
    return [
        (action, arn)
        for action, arn, tags, *context in attacks_on(target, attacker)
        if tf.is_allowed(role, action, arn, tags, **(context[0] if context else {}))
    ]


ROLES = [(env, name) for env in tf.ENVIRONMENTS for name in tf.roles(env)]


@pytest.mark.parametrize(("env", "name"), ROLES, ids=[f"{env}:{name}" for env, name in ROLES])
def test_no_role_reaches_the_other_environment(env, name):
    """Each role's effective permissions (its policies, or anything for those a module writes,
    within its boundary; denies first) against the other environment's resources and what both
    share. Roles added later (another .tf file, another module) are found and checked too."""
    role = tf.roles(env)[name]
    assert role.boundary is not None
    assert not allowed_attacks(role, other(env), env)


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_only_the_image_push_role_writes_images(env):
    """Both environments deploy from one repository: a push by anyone else could take a tag prod
    deploys next, or push prod-* tags until the lifecycle expires prod's images. The repository
    policy denies it whatever the identity policies say (dev's apply role has PowerUserAccess)."""
    shared = {"Environment": "shared"}
    for role in tf.roles(env).values():
        for action in ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"):
            allowed = can(role, action, tf.ECR_REPOSITORY_ARN, shared)
            assert allowed == (role.name == "titanic-dev-image-push"), f"{role}: {action}"
        if not role.known:  # nodes still pull
            assert can(role, "ecr:BatchGetImage", tf.ECR_REPOSITORY_ARN, shared)


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_only_the_load_balancer_controller_changes_web_acls(env):
    """wafv2's association calls see no tag of the ALB, and elasticloadbalancing:SetWebAcl has no
    resource: only this environment's controller associates, and not on the other's ALBs."""
    own, others = (
        f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/k8s-titanic{e[0]}-api-0a1b/0a1b"
        for e in (env, other(env))
    )
    for role in tf.roles(env).values():
        controller = role.name == f"titanic-{env}-aws-lb-controller"
        assert can(role, "elasticloadbalancing:SetWebAcl", "*") == controller, role
        for action in ("wafv2:AssociateWebACL", "wafv2:DisassociateWebACL"):
            assert can(role, action, own) == controller, f"{role}: {action}"
            assert not can(role, action, others), f"{role}: {action}"


def test_the_isolation_check_can_fail():
    """Without the isolation statements, dev's apply role (PowerUserAccess) reaches prod: the
    defects of the issue, each found by the check above."""
    role = tf.roles("dev")["titanic-dev-terraform"]

    def without_isolation(policy):
        sids = {s["Sid"] for s in tf.Renderer("dev").policy("environment_isolation")["Statement"]}
        return {"Statement": [s for s in policy["Statement"] if s.get("Sid") not in sids]}

    stripped = tf.Role(
        role.name, [without_isolation(p) for p in role.identity_policies], without_isolation(role.boundary)
    )
    reached = allowed_attacks(stripped, "prod", "dev")
    cluster = f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/titanic-prod"
    assert ("eks:CreateAccessEntry", cluster) in reached
    assert ("rds:ModifyDBInstance", f"arn:aws:rds:{REGION}:{ACCOUNT}:db:titanic-prod") in reached
    assert ("s3:PutObject", f"arn:aws:s3:::{STATE_BUCKET}/titanic/prod.tfstate") in reached
    assert ("ecr:BatchDeleteImage", tf.ECR_REPOSITORY_ARN) in reached


can = tf.is_allowed


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_each_role_can_still_do_its_job(env):
    """The denies leave each role what it is for (a boundary that denied everything would pass the
    isolation check)."""
    roles, a, r = tf.roles(env), ACCOUNT, REGION
    n, tags = f"titanic-{env}", {"Environment": env}
    apply, plan, deploy = roles[f"{n}-terraform"], roles[f"{n}-terraform-plan"], roles[f"{n}-deploy"]
    state = f"arn:aws:s3:::{STATE_BUCKET}/titanic/{env}.tfstate"
    cluster = f"arn:aws:eks:{r}:{a}:cluster/{n}"
    secret = str(tf.placeholders(env)["aws_secretsmanager_secret.django_secret_key.arn"])
    boundary = {"iam:PermissionsBoundary": tf.boundary_arn(env)}
    assert can(apply, "s3:PutObject", state) and can(apply, "s3:PutObject", state + ".tflock")
    assert can(apply, "eks:CreateAccessEntry", cluster, tags)
    assert can(apply, "rds:ModifyDBInstance", f"arn:aws:rds:{r}:{a}:db:{n}", tags)
    assert can(apply, "iam:PutRolePolicy", f"arn:aws:iam::{a}:role/{n}-app", tags, **boundary)
    assert not can(apply, "iam:PutRolePolicy", f"arn:aws:iam::{a}:role/{n}-app", tags)  # without the boundary
    assert can(apply, "route53:ChangeResourceRecordSets", f"arn:aws:route53:::hostedzone/{tf.ZONES[env]}")
    assert can(apply, "ecr:DescribeRepositories", tf.ECR_REPOSITORY_ARN, {"Environment": "shared"})
    assert can(plan, "s3:GetObject", state) and can(plan, "secretsmanager:GetSecretValue", secret, tags)
    assert can(deploy, "eks:DescribeCluster", cluster, tags)
    assert can(roles[f"{n}-external-secrets"], "secretsmanager:GetSecretValue", secret, tags)
    for role in roles.values():
        if not role.known:  # module-made policies: the boundary leaves what they need
            assert can(role, "ec2:RunInstances", f"arn:aws:ec2:{r}:{a}:instance/*")
            assert can(role, "ecr:BatchGetImage", tf.ECR_REPOSITORY_ARN, {"Environment": "shared"})
    if tf.tfvars(env)["create_shared_resources"]:
        push = roles[f"{n}-image-push"]
        for action in ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:BatchGetImage", "ecr:DescribeImages"):
            assert can(push, action, tf.ECR_REPOSITORY_ARN, {"Environment": "shared"}), action


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_no_pull_request_role_writes_the_state_bucket(env):
    """Plans run with -lock=false: a role a pull request can assume writes no object of the state
    bucket (lock files included) and changes nothing of the bucket."""
    s3_writes = [
        action
        for pattern in ("s3:Put*", "s3:Delete*", "s3:Restore*", "s3:Replicate*")
        for action in iam.actions_matching(pattern)
    ]
    keys = ["titanic/dev.tfstate", "titanic/prod.tfstate", "titanic/dev.tfstate.tflock", "titanic/prod.tfstate.tflock"]
    targets = [f"arn:aws:s3:::{STATE_BUCKET}"] + [f"arn:aws:s3:::{STATE_BUCKET}/{key}" for key in keys]
    pr_roles = [
        role for role in tf.roles(env).values() if role.subjects and "repo:owner/repo:pull_request" in role.subjects
    ]
    assert [role.name for role in pr_roles] == (["titanic-dev-terraform-plan"] if env == "dev" else [])
    for role in pr_roles:
        writes = [(a, t) for a in s3_writes for t in targets if can(role, a, t)]
        assert not writes, f"{role}: {writes[:5]}"


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_no_role_replaces_a_role_github_assumes(env):
    """Deleting a role and creating it again under the same name rewrites its trust: no role of the
    environment may do that to a role GitHub's jobs assume (the image push role included)."""
    github_roles = [role for role in tf.roles(env).values() if role.subjects is not None]
    assert {r.name.removeprefix(f"titanic-{env}-") for r in github_roles} >= {"deploy", "terraform", "terraform-plan"}
    boundary = {"iam:PermissionsBoundary": tf.boundary_arn(env)}
    for role in tf.roles(env).values():
        for target in github_roles:
            for action in ("iam:DeleteRole", "iam:CreateRole"):
                assert not can(role, action, target.arn, {"Environment": env}, **boundary), f"{role}: {action} {target}"
    # Other roles of the environment the apply role still creates and deletes.
    apply = tf.roles(env)[f"titanic-{env}-terraform"]
    assert can(apply, "iam:DeleteRole", f"arn:aws:iam::{ACCOUNT}:role/titanic-{env}-app", {"Environment": env})
    assert can(apply, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/titanic-{env}-app", **boundary)


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_karpenter_manages_its_own_instance_profiles_only(env):
    karpenter, n = tf.roles(env)[f"titanic-{env}-karpenter"], f"titanic-{env}"
    profiles = [f"{n}_1234567890", f"karpenter/{REGION}/{n}/0a1b-2c3d/{n}_1234567890"]
    for profile in profiles:
        arn = f"arn:aws:iam::{ACCOUNT}:instance-profile/{profile}"
        for action in ("iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:DeleteInstanceProfile"):
            assert can(karpenter, action, arn), f"{action} {profile}"
    for profile in ("eks-0a1b2c3d-0000-0000-0000", "someone-elses"):
        assert not can(
            karpenter, "iam:RemoveRoleFromInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/{profile}"
        )


@pytest.mark.parametrize("env", tf.ENVIRONMENTS)
def test_no_role_changes_who_may_assume_a_role(env):
    """iam:UpdateAssumeRolePolicy is denied to every role (the apply role included), on every role
    of both environments: trust policies are written at creation and changed by administrators."""
    targets = [
        f"arn:aws:iam::{ACCOUNT}:role/titanic-{e}-{k}" for e in tf.ENVIRONMENTS for k in ("terraform", "deploy", "x")
    ]
    for role in tf.roles(env).values():
        for target in targets:
            context = {"iam:PermissionsBoundary": tf.boundary_arn(env)}
            assert not can(role, "iam:UpdateAssumeRolePolicy", target, {"Environment": env}, **context), (
                f"{role}: {target}"
            )
    assert (
        "iam:UpdateAssumeRolePolicy"
        not in statement(tf.Renderer(env).policy("terraform_apply_iam"), "ManageTitanicRoles")["Action"]
    )


# --------------------------------------------------------------------------- ECR lifecycle on a year of history

LIFECYCLE_POLICY = json.loads((TF_DIR / "ecr-lifecycle-policy.json").read_text())
# kustomize/base/deployment.yaml: the ReplicaSets Kubernetes keeps, so `rollout undo` targets.
REVISION_HISTORY_LIMIT = 5


class Registry:
    """A synthetic titanic-api repository: what deploy.yml pushes and tags, day by day."""

    def __init__(self):
        self.images: dict[str, Image] = {}
        self.count = 0

    def push(self, day, tags, platforms=("amd64", "arm64"), attestations=True):
        """A multi-arch push as buildx makes it: one image per platform, an attestation manifest
        per platform, and the tagged index that references them all."""
        self.count += 1
        children = [f"sha256:{self.count}-{p}" for p in platforms]
        if attestations:
            children += [f"sha256:{self.count}-attestation-{p}" for p in platforms]
        for child in children:
            self.images[child] = Image(child, day)
        index = f"sha256:{self.count}-index"
        self.images[index] = Image(index, day, frozenset(tags), tuple(children))
        return index

    def add_tag(self, digest, tag):
        image = self.images[digest]
        self.images[digest] = Image(digest, image.pushed_day, image.tags | {tag}, image.references)

    def orphan(self, day):
        """A push that failed after the platform images: nothing references them."""
        self.count += 1
        digest = f"sha256:{self.count}-orphan"
        self.images[digest] = Image(digest, day)
        return digest


def history(policy, days=365):
    """A year of the deploy workflow: two merges a weekday (built, pushed as <sha>, deployed to dev),
    prod deployed every second week, a slow month with prod waiting 60 days, a release (vX.Y.Z tag
    build) a month, a failed push now and then, a rollback of prod to an older image. The lifecycle
    runs every day. Yields (day, registry, what each environment may roll back to, releases)."""
    registry = Registry()
    deployed: dict[str, list[str]] = {"dev": [], "prod": []}
    releases, orphans = [], []

    def deploy(env, digest):
        registry.add_tag(digest, f"{env}-{digest}")
        deployed[env].append(digest)

    for day in range(days):
        if day % 7 < 5:
            for merge in range(2):
                digest = registry.push(day, {f"sha-{day}-{merge}"})
                deploy("dev", digest)
        if day % 14 == 0 and not 150 <= day < 210 and deployed["dev"]:
            deploy("prod", deployed["dev"][-1])
        if day == 250:  # `scripts/deploy prod` of the previous prod image, DEPLOY_ALLOW_OLDER=1
            deploy("prod", deployed["prod"][-3])
        if day % 30 == 15:
            releases.append(registry.push(day, {f"1.{day // 30}.0"}))
        if day % 45 == 10:
            orphans.append((day, registry.orphan(day)))
        registry.images = ecr_lifecycle.run(policy, registry.images, day)
        rollback = {}
        for env, digests in deployed.items():
            distinct = list(dict.fromkeys(reversed(digests)))  # newest first
            rollback[env] = distinct[: REVISION_HISTORY_LIMIT + 1]
        yield day, registry, rollback, releases, orphans


def test_the_lifecycle_policy_is_one_ecr_accepts():
    ecr_lifecycle.validate(LIFECYCLE_POLICY)


def test_the_lifecycle_keeps_releases_and_what_each_environment_may_roll_back_to():
    worst = 0
    for day, registry, rollback, releases, orphans in history(LIFECYCLE_POLICY):
        images = registry.images
        for env, digests in rollback.items():
            for digest in digests:
                # The index and every platform image and attestation it references.
                assert ecr_lifecycle.complete(images, digest), f"day {day}: {env} lost {digest}"
        for digest in releases:
            assert ecr_lifecycle.complete(images, digest), f"day {day}: release {digest} lost"
        for pushed, digest in orphans:
            # Untagged manifests nothing references go a week after their push.
            assert (digest in images) == (day - pushed <= 7), f"day {day}: orphan of day {pushed}"
        worst = max(worst, sum(1 for image in images.values() if image.tags))
    # Bounded: 100 prod deploys + 20 dev deploys + 30 days of builds + 12 releases, at most.
    assert worst <= 100 + 20 + 2 * 30 + 12


def test_images_nobody_runs_go():
    """A pushed image no environment deployed expires after 30 days; dev's older deploys beyond its
    last 20 go too."""
    registry = Registry()
    built = registry.push(0, {"sha-built"})
    dev = [registry.push(day, {f"sha-{day}"}) for day in range(1, 31)]
    for digest in dev:
        registry.add_tag(digest, f"dev-{digest}")
    images = ecr_lifecycle.run(LIFECYCLE_POLICY, registry.images, 31)
    images = ecr_lifecycle.run(LIFECYCLE_POLICY, images, 32)
    assert built not in images and not any(ref in images for ref in registry.images[built].references)
    assert [d for d in dev if d in images] == dev[-20:]


def test_the_count_of_every_image_loses_what_prod_runs():
    """The policy this replaces (any image, more than 20) expires prod's running image once prod
    waits: the history above catches it."""
    old = {
        "rules": [
            {
                "rulePriority": 1,
                "description": "Keep the last 20 images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
                "action": {"type": "expire"},
            }
        ]
    }
    lost = []
    for day, registry, rollback, _releases, _orphans in history(old, days=200):
        lost += [(day, d) for d in rollback["prod"] if not ecr_lifecycle.complete(registry.images, d)]
    assert lost


# --------------------------------------------------------------------------- Karpenter


def test_karpenter(modules, parsed):
    karpenter = modules["karpenter"]
    assert karpenter["source"] == "terraform-aws-modules/eks/aws//modules/karpenter"
    assert karpenter["cluster_name"] == "module.eks.cluster_name"
    # Names inside the apply role's IAM scope (titanic-<env>-*), no random prefixes.
    for key in ("iam_role_name", "iam_policy_name", "node_iam_role_name"):
        assert karpenter[key].startswith("${local.name}-"), key
    for key in ("iam_role_use_name_prefix", "iam_policy_use_name_prefix", "node_iam_role_use_name_prefix"):
        assert karpenter[key] is False, key
    assert (karpenter["namespace"], karpenter["service_account"]) == ("kube-system", "karpenter")
    assert karpenter.get("create_pod_identity_association", True) is True
    assert karpenter.get("enable_spot_termination", True) is True
    assert (karpenter["create_access_entry"], karpenter["access_entry_type"]) == (True, "EC2_LINUX")
    # Discovery: the EC2NodeClass selects subnets and the node security group by this tag.
    discovery = {"karpenter.sh/discovery": "local.name"}
    assert discovery.items() <= modules["vpc"]["private_subnet_tags"].items()
    assert modules["eks"]["node_security_group_tags"] == discovery
    outputs = blocks(parsed, "output")
    assert outputs["karpenter_node_iam_role_name"]["value"] == "module.karpenter.node_iam_role_name"
    assert outputs["karpenter_queue_name"]["value"] == "module.karpenter.queue_name"
    # The managed node group stays: the fixed system pool Karpenter itself runs on.
    assert len(modules["eks"]["eks_managed_node_groups"]) == 1


# --------------------------------------------------------------------------- .github/workflows/terraform.yml

WORKFLOW = REPO / ".github" / "workflows" / "terraform.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def step(job, name=None, uses=None):
    for candidate in job["steps"]:
        if (name and candidate.get("name") == name) or (uses and candidate.get("uses", "").startswith(uses + "@")):
            return candidate
    raise AssertionError(f"no step {name or uses}")


def test_workflow_plans_prod_only_on_main_and_applies_through_approved_environments(workflow):
    assert workflow[True]["pull_request"]["paths"][0] == "terraform/**"
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    # Pull requests plan dev; a push to main plans both before the approvals.
    assert plan["strategy"]["matrix"]["environment"] == (
        """${{ fromJSON(github.event_name != 'pull_request' && '["dev", "prod"]' || '["dev"]') }}"""
    )
    assert apply["needs"] == "plan"
    assert apply["environment"] == "terraform-${{ matrix.environment }}"
    assert apply["strategy"]["max-parallel"] == 1
    roles = {
        name: step(job, uses="aws-actions/configure-aws-credentials")
        for name, job in (("plan", plan), ("apply", apply))
    }
    assert "TERRAFORM_PLAN_ROLE_ARN_" in roles["plan"]["with"]["role-to-assume"]
    assert roles["apply"]["with"]["role-to-assume"] == "${{ vars.TERRAFORM_ROLE_ARN }}"
    assert "-lock=false" in next(s["run"] for s in plan["steps"] if s.get("id") == "plan")
    comment = step(plan, uses="actions/github-script")
    assert comment["if"] == "github.event_name == 'pull_request'"
    for job in (plan, apply):
        for name in ("public_hostname", "route53_zone_id"):
            assert f"vars[format('{name.upper()}_{{0}}', matrix.environment)]" in job["env"][f"TF_VAR_{name}"]


def test_the_apply_applies_the_plan_the_approvers_read(workflow):
    """The plan job uploads its plan file (the one its summary shows); the apply job downloads that
    file from the same run and applies it without planning again. Terraform itself refuses a saved
    plan whose state has changed since ("Saved plan is stale")."""
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    upload = step(plan, uses="actions/upload-artifact")
    assert upload["with"]["name"] == "tfplan-${{ matrix.environment }}"
    assert upload["with"]["path"] == "terraform/tfplan"
    assert "steps.plan.outputs.outcome == 'success'" in upload["if"]
    # The way out of "Saved plan is stale" is a new plan: a re-run of the run's plan jobs replaces
    # its plan file (upload-artifact v4+ refuses a name taken in the run unless overwrite), or a new
    # run of main started by hand.
    assert upload["with"]["overwrite"] is True
    assert "workflow_dispatch" in workflow[True]
    assert apply["if"] == "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    summary = step(plan, name="Write the plan to the job summary")["run"]
    assert "sha256sum tfplan" in summary
    download = step(apply, uses="actions/download-artifact")
    assert download["with"] == {"name": "tfplan-${{ matrix.environment }}", "path": "terraform"}
    runs = [s.get("run", "") for s in apply["steps"]]
    assert not [r for r in runs if "terraform plan" in r], "the apply job must not plan again"
    applied = step(apply, name="terraform apply (the reviewed plan)")["run"]
    assert "terraform apply -lock-timeout=10m -input=false tfplan" in applied and "sha256sum tfplan" in applied
    names = [s.get("name") or s.get("uses") for s in apply["steps"]]
    assert names.index("The plan the approvers read") < names.index("terraform apply (the reviewed plan)")


def test_plan_and_apply_use_the_committed_lock_file_only(workflow):
    for name in ("plan", "apply"):
        assert "terraform init -lockfile=readonly" in step(workflow["jobs"][name], name="terraform init")["run"]
    assert workflow["jobs"]["plan"]["needs"] == "lock-file"
    platforms = workflow["env"]["TF_LOCK_PLATFORMS"].split()
    assert {"linux_amd64", "linux_arm64", "darwin_arm64"} <= set(platforms)
    generate = step(workflow["jobs"]["lock-file"], name="Generate the lock file for every platform in use")["run"]
    assert "terraform providers lock" in generate and "TF_LOCK_PLATFORMS" in generate


FAKE_TERRAFORM = r"""#!/usr/bin/env python3
# A stand-in for `terraform init` and `terraform providers lock` on .terraform.lock.hcl: like
# Terraform, both keep the version a lock file selects and add their hashes to those it lists.
import re, sys
REGISTRY = ["h1:REAL", "zh:REAL"]
try:
    text = open(".terraform.lock.hcl").read()
except FileNotFoundError:
    text = 'provider "registry.terraform.io/hashicorp/aws" {\n  version = "6.28.0"\n}\n'
version = re.search(r'version = "([^"]+)"', text).group(1)
listed = re.findall(r'"((?:h1|zh):[^"]+)"', text)
added = REGISTRY[:1] if sys.argv[1] == "init" else REGISTRY
hashes = "".join(f'    "{h}",\n' for h in sorted(set(listed + added)))
open(".terraform.lock.hcl", "w").write(
    f'provider "registry.terraform.io/hashicorp/aws" {{\n  version = "{version}"\n  hashes = [\n{hashes}  ]\n}}\n'
)
"""
GENERATED_LOCK = (
    'provider "registry.terraform.io/hashicorp/aws" {\n  version = "6.28.0"\n'
    '  hashes = [\n    "h1:REAL",\n    "zh:REAL",\n  ]\n}\n'
)


def lock_file_check(workflow, tmp_path, committed, steps=None):
    """The lock-file job's steps, run in a scratch repository holding the committed lock file (None:
    none committed) with a stand-in terraform. The exit code of the last step that ran."""
    job = workflow["jobs"]["lock-file"]
    steps = steps or ["Keep only the committed version selections", "Generate the lock file for every platform in use"]
    scripts = [step(job, name=name)["run"] for name in [*steps, "The committed lock file is the generated one"]]

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "terraform").write_text(FAKE_TERRAFORM)
    (tmp_path / "bin" / "terraform").chmod(0o755)
    git("init", "-q")
    (tmp_path / "main.tf").write_text("")
    if committed is not None:
        (tmp_path / ".terraform.lock.hcl").write_text(committed)
    git("add", "main.tf", *([".terraform.lock.hcl"] if committed is not None else []))
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "state")
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "RUNNER_TEMP": str(tmp_path / "bin"),
        "TF_LOCK_PLATFORMS": "linux_amd64 darwin_arm64",
    }
    for script in scripts:
        proc = subprocess.run(
            ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )
        if proc.returncode != 0:
            break
    return proc


@pytest.mark.parametrize(
    ("committed", "passes"),
    [
        (None, False),
        (GENERATED_LOCK, True),
        (GENERATED_LOCK.replace('    "zh:REAL",\n', '    "zh:REAL",\n    "zh:ZZPLANTED",\n'), False),
        (GENERATED_LOCK.replace('    "zh:REAL",\n', ""), False),
    ],
    ids=["missing", "same", "an extra hash", "a hash missing"],
)
def test_the_lock_file_check_fails_unless_the_committed_file_is_the_generated_one(
    workflow, tmp_path, committed, passes
):
    """The version a committed file selects is kept (an upgrade is `terraform init -upgrade`, by a
    maintainer); its hashes must be exactly those generated for that version and the platforms."""
    proc = lock_file_check(workflow, tmp_path, committed)
    assert (proc.returncode == 0) == passes, proc.stdout + proc.stderr
    if not passes:
        assert "::error" in proc.stdout and GENERATED_LOCK in (tmp_path / "summary.md").read_text()


def test_an_extra_hash_passes_when_the_committed_hashes_are_kept(workflow, tmp_path):
    """Why the hashes are dropped first: `providers lock` adds to those listed, so the generated
    file keeps a planted one and equals the committed file."""
    planted = GENERATED_LOCK.replace('    "zh:REAL",\n', '    "zh:REAL",\n    "zh:ZZPLANTED",\n')
    proc = lock_file_check(workflow, tmp_path, planted, steps=["Generate the lock file for every platform in use"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def admin_check(job):
    names = [step.get("name") for step in job["steps"]]
    index = names.index("Require the cluster admins")
    assert index < names.index("terraform init"), "the check must run before Terraform"
    return job["steps"][index]["run"]


@pytest.mark.parametrize("job", ["plan", "apply"])
def test_workflow_stops_without_the_cluster_admins(workflow, job, tmp_path):
    assert workflow["env"]["TF_VAR_cluster_admin_arns"] == "${{ vars.CLUSTER_ADMIN_ARNS }}"
    script = admin_check(workflow["jobs"][job])
    for value, code in (("", 1), ('{"alice": "arn:aws:iam::111122223333:role/admin"}', 0)):
        proc = subprocess.run(
            ["bash", "-e", "-c", script],
            env={"PATH": "/usr/bin:/bin", "TF_VAR_cluster_admin_arns": value},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert proc.returncode == code, proc.stdout + proc.stderr
    assert "::error::" in proc.stdout or code == 0
