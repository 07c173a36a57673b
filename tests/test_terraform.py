"""Static checks of terraform/: parse, structure, security invariants, checkov, fmt.

There is no AWS access (and no registry access) here, so `terraform init/validate/plan`
cannot run; the GitHub workflow runs them. These tests cover what can be checked offline.
"""

import json
import re
import shutil
import subprocess

import hcl2
import pytest

from tests.conftest import REPO, tool_path
from tests.support.hcl import blocks, code_without_comments, merged_locals, strip_meta, typed_blocks

TF_DIR = REPO / "terraform"
TF_FILES = sorted(TF_DIR.glob("*.tf"))
TFVARS_FILES = sorted((TF_DIR / "envs").glob("*.tfvars"))

# Current majors of the terraform-aws-modules registry modules (see docs/style.md).
MODULE_MAJORS = {
    "terraform-aws-modules/vpc/aws": 6,
    "terraform-aws-modules/eks/aws": 21,
    "terraform-aws-modules/rds/aws": 7,
    "terraform-aws-modules/iam/aws": 6,
    "terraform-aws-modules/ecr/aws": 3,
    "terraform-aws-modules/eks-pod-identity/aws": 2,
}

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
    result = {}
    for path in TF_FILES:
        with path.open() as fh:
            result[path.name] = hcl2.load(fh)
    return result


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
    assert first_block.group(1) == "locals"
    local_values = merged_locals(parsed)
    for key in ("name", "azs", "tags"):
        assert key in local_values


def test_versions_and_backend(parsed):
    terraform = [strip_meta(t) for doc in parsed.values() for t in doc.get("terraform", [])]
    required_version = next(t["required_version"] for t in terraform if "required_version" in t)
    assert required_version == ">= 1.11"
    providers = next(t["required_providers"] for t in terraform if "required_providers" in t)[0]
    aws_version = providers["aws"]["version"]
    assert re.fullmatch(r">= 6(\.\d+)*", aws_version), aws_version
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
    for label, body in modules.items():
        assert body.get("tags") == "local.tags", f"module {label} does not pass tags = local.tags"


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
        "terraform_role_arn",
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


def test_eks_cluster_and_node_group(modules, variables):
    assert variables["kubernetes_version"]["default"] == "1.35"
    eks = modules["eks"]
    assert eks["kubernetes_version"] == "var.kubernetes_version"
    assert eks["authentication_mode"] == "API"
    assert set(eks["enabled_log_types"]) >= {"api", "audit", "authenticator"}
    addons = eks["addons"]
    for addon in ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "amazon-cloudwatch-observability"):
        assert addon in addons
    (group,) = eks["eks_managed_node_groups"].values()
    assert group["ami_type"] == "AL2023_ARM_64_STANDARD"
    assert group["capacity_type"] == "SPOT"
    assert group["labels"] == {"titanic.io/pool": "arm-spot"}
    assert "taints" not in group
    assert len(variables["node_instance_types"]["default"]) >= 3
    assert all(re.match(r"^[a-z]+\d+g", t) for t in variables["node_instance_types"]["default"])


def test_deploy_access_is_namespace_scoped(modules):
    # access_entries is a merge() expression; python-hcl2 returns it as text.
    entries = re.sub(r"\s+", " ", modules["eks"]["access_entries"])
    deploy = entries.split("for i, arn in var.cluster_admin_arns")[0]
    assert 'principal_arn = module.github_role["deploy"].arn' in deploy
    assert "AmazonEKSEditPolicy" in deploy
    assert 'type = "namespace", namespaces = [local.app_namespace]' in deploy
    assert "ClusterAdmin" not in deploy


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
    assert variables["db_backup_retention_days"]["default"] == 7
    assert {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"} in db["parameters"]
    assert db["vpc_security_group_ids"] == ["aws_security_group.db.id"]
    rule = resources[("aws_vpc_security_group_ingress_rule", "db_from_nodes")]
    assert rule["referenced_security_group_id"] == "module.eks.node_security_group_id"
    assert (rule["from_port"], rule["to_port"]) == (5432, 5432)
    ingress = [k for k in resources if k[0] in ("aws_vpc_security_group_ingress_rule", "aws_security_group_rule")]
    assert ingress == [("aws_vpc_security_group_ingress_rule", "db_from_nodes")]


def test_ecr(modules):
    ecr = modules["ecr"]
    assert ecr["repository_name"] == "titanic-api"
    assert ecr["repository_image_tag_mutability"] == "IMMUTABLE"
    assert ecr["repository_image_scan_on_push"] is True
    assert "countNumber = 20" in ecr["repository_lifecycle_policy"]


def test_github_oidc_subjects_are_exact(parsed, modules):
    subjects = merged_locals(parsed)["github_subjects"]
    assert set(subjects) == {"deploy", "terraform", "terraform-plan"}
    text = json.dumps(subjects)
    assert "*" not in text
    # The jobs of .github/workflows/deploy.yml and terraform.yml.
    for expected in (
        ":ref:refs/heads/main",
        ":environment:dev",
        ":environment:prod",
        ":environment:terraform-${var.environment}",
        ":pull_request",
    ):
        assert expected in text
    assert subjects["terraform-plan"] == ["${local.github_subject_prefix}:pull_request"]
    assert merged_locals(parsed)["github_subject_prefix"] == "repo:${var.github_repository}"
    role = modules["github_role"]
    assert role["enable_github_oidc"] is True
    assert role["oidc_subjects"] == "each.value.subjects"
    assert "oidc_wildcard_subjects" not in role


def test_external_secrets_reads_only_the_two_secrets(parsed, modules):
    docs = typed_blocks(parsed, "data")
    (statement,) = docs[("aws_iam_policy_document", "external_secrets")]["statement"]
    assert set(statement["actions"]) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert statement["resources"] == [
        "module.db.db_instance_master_user_secret_arn",
        "aws_secretsmanager_secret.django_secret_key.arn",
    ]
    (association,) = modules["external_secrets_pod_identity"]["associations"].values()
    assert (association["namespace"], association["service_account"]) == ("external-secrets", "external-secrets")
    (association,) = modules["lb_controller_pod_identity"]["associations"].values()
    assert (association["namespace"], association["service_account"]) == ("kube-system", "aws-load-balancer-controller")


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


def run_terraform(*args, cwd):
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform binary not installed here; the GitHub workflow runs fmt and validate")
    return subprocess.run(
        [terraform, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        # Offline: no CLI configuration, no version check, no prompts.
        env={"PATH": "/usr/bin:/bin", "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"},
    )


def test_terraform_fmt():
    proc = run_terraform("fmt", "-check", "-recursive", "-diff", str(TF_DIR), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Values CI passes with TF_VAR_* (placeholders; never committed in tfvars).
CALLER_VARS = ["-var", "github_repository=owner/repo", "-var", "state_bucket=titanic-tfstate-example"]


@pytest.fixture(scope="module")
def variables_only_root(tmp_path_factory):
    """variables.tf alone: needs no provider or module, so Terraform can plan it offline."""
    root = tmp_path_factory.mktemp("tfvars")
    shutil.copy(TF_DIR / "variables.tf", root)
    proc = run_terraform("init", "-backend=false", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_tfvars_pass_variable_types_and_validations(variables_only_root, env):
    proc = run_terraform(
        "plan", "-lock=false", f"-var-file={TF_DIR / 'envs' / f'{env}.tfvars'}", *CALLER_VARS, cwd=variables_only_root
    )
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
    ],
)
def test_variable_validations_reject_bad_values(variables_only_root, override, message):
    proc = run_terraform(
        "plan",
        "-lock=false",
        f"-var-file={TF_DIR / 'envs' / 'dev.tfvars'}",
        *CALLER_VARS,
        "-var",
        override,
        cwd=variables_only_root,
    )
    assert proc.returncode != 0
    assert message in re.sub(r"\s+", " ", proc.stderr + proc.stdout)
