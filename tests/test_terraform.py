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
import yaml

from tests.support import REPO, tool_path
from tests.support.hcl import blocks, code_without_comments, merged_locals, strip_meta, typed_blocks

pytestmark = pytest.mark.infra

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
    "terraform-aws-modules/iam/aws//modules/iam-oidc-provider",
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
    assert "countNumber = 20" in ecr["repository_lifecycle_policy"]


def test_github_oidc_subjects_are_exact(parsed, modules):
    subjects = merged_locals(parsed)["github_subjects"]
    assert set(subjects) == {"deploy", "terraform", "terraform-plan"}
    text = json.dumps(subjects)
    assert "*" not in text
    # The jobs of .github/workflows/deploy.yml and terraform.yml.
    for expected in (
        "local.github_main",
        ":environment:dev",
        ":environment:release",
        ":environment:prod",
        ":environment:terraform-${var.environment}",
        ":pull_request",
    ):
        assert expected in text
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
        env={
            "PATH": "/usr/bin:/bin",
            "TF_CLI_CONFIG_FILE": "/dev/null",
            "CHECKPOINT_DISABLE": "1",
            "TF_INPUT": "0",
            "TF_CLI_ARGS_plan": "-no-color",
        },
    )


def test_terraform_fmt():
    proc = run_terraform("fmt", "-check", "-recursive", "-diff", str(TF_DIR), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Values CI passes with TF_VAR_* (placeholders; never committed in tfvars).
CALLER_VARS = [
    "-var", "github_repository=owner/repo",
    "-var", "state_bucket=titanic-tfstate-example",
    "-var", 'cluster_admin_arns={alice = "arn:aws:iam::111122223333:role/admin"}',  # pragma: allowlist secret
]  # fmt: skip


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
        ("cluster_admin_arns={}", "must name at least one cluster administrator"),
        ('cluster_admin_arns={Alice = "arn:aws:iam::111122223333:role/admin"}', "short lower-case names"),
        ('cluster_admin_arns={alice = "arn:aws:iam::111122223333:group/admins"}', "IAM role or user ARNs"),
        ('cluster_admin_arns=["arn:aws:iam::111122223333:role/admin"]', "map of string required"),
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


def test_cluster_admins_are_required(variables_only_root):
    """Fails closed: an apply without the admins stops instead of deleting their access entries."""
    without_admins = CALLER_VARS[:4]
    proc = run_terraform(
        "plan", "-lock=false", f"-var-file={TF_DIR / 'envs' / 'dev.tfvars'}", *without_admins, cwd=variables_only_root
    )
    assert proc.returncode != 0
    message = re.sub(r"\s+", " ", proc.stderr + proc.stdout)
    assert "No value for required variable" in message and 'variable "cluster_admin_arns"' in message


# --------------------------------------------------------------------------- who may assume what


def block_text(path, marker):
    """The source text of the top-level block of `path` that contains `marker`."""
    text = path.read_text()
    for match in re.finditer(r"^\w+( \"[^\"]*\")* \{$", text, flags=re.MULTILINE):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        block = text[match.start() : end + 1]
        if marker in block:
            return block
    raise AssertionError(f"no block of {path.name} contains {marker}")


@pytest.fixture(scope="module")
def evaluated_subjects(tmp_path_factory):
    """iam.tf's OIDC subject locals, evaluated by Terraform for dev and prod (no provider needed)."""
    root = tmp_path_factory.mktemp("subjects")
    shutil.copy(TF_DIR / "variables.tf", root)
    (root / "main.tf").write_text(
        block_text(TF_DIR / "iam.tf", "github_subjects = {")
        + '\nlocals {\n  is_prod = var.environment == "prod"\n  name = "titanic-${var.environment}"\n'
        + '  partition = "aws"\n  account_id = "111122223333"\n}\n'
        + 'output "subjects" {\n  value = local.github_subjects\n}\n'
    )
    assert run_terraform("init", "-backend=false", cwd=root).returncode == 0
    found = {}
    for env in ("dev", "prod"):
        var_file = f"-var-file={TF_DIR / 'envs' / f'{env}.tfvars'}"
        proc = run_terraform("plan", "-lock=false", f"-out={env}.plan", var_file, *CALLER_VARS, cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        shown = run_terraform("show", "-json", f"{env}.plan", cwd=root)
        found[env] = json.loads(shown.stdout)["planned_values"]["outputs"]["subjects"]["value"]
    return found


def test_pull_requests_get_no_prod_role(evaluated_subjects):
    main = "repo:owner/repo:ref:refs/heads/main"
    pull_request = "repo:owner/repo:pull_request"
    dev, prod = evaluated_subjects["dev"], evaluated_subjects["prod"]
    assert dev["terraform-plan"] == [pull_request, main]
    # The plan role reads the Django secret (below): prod's trusts main only.
    assert prod["terraform-plan"] == [main]
    assert not [role for role, subjects in prod.items() if pull_request in subjects]
    assert prod["deploy"] == ["repo:owner/repo:environment:prod"]
    assert prod["terraform"] == ["repo:owner/repo:environment:terraform-prod"]
    assert dev["deploy"] == [main, "repo:owner/repo:environment:dev", "repo:owner/repo:environment:release"]


def test_plan_role_reads_only_its_own_environments_secret(parsed):
    policy = render_policy(parsed, "terraform_plan")
    readers = [s for s in policy["Statement"] if any("secretsmanager" in a for a in s.get("Action", []))]
    assert [(s["Action"], s["Resource"]) for s in readers] == [
        (["secretsmanager:GetSecretValue"], [PLACEHOLDERS["aws_secretsmanager_secret.django_secret_key.arn"]])
    ]


# --------------------------------------------------------------------------- IAM policies: boundary, guardrails, lint

# What the references of the policy documents stand for when they are rendered for the linter
# (dev's names; a made-up account id). Locals are resolved from the code itself.
PLACEHOLDERS = {
    "var.environment": "dev",
    "var.region": "us-east-1",
    "var.state_bucket": "titanic-tfstate-example",
    "local.partition": "aws",
    "local.account_id": "111122223333",
    "local.ecr_repository_arn": "arn:aws:ecr:us-east-1:111122223333:repository/titanic-api",
    "aws_secretsmanager_secret.django_secret_key.arn": (
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:titanic/dev/django-secret-key-AbCdEf"
    ),
    "module.db.db_instance_master_user_secret_arn": (
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-0a1b2c3d-AbCdEf"
    ),
}
BOUNDARY_ARN = "arn:aws:iam::111122223333:policy/titanic-dev-permissions-boundary"


def resolve(expression, local_values):
    if expression in PLACEHOLDERS:
        return PLACEHOLDERS[expression]
    if expression.startswith("local.") and expression[6:] in local_values:
        return render_value(local_values[expression[6:]], local_values)
    raise AssertionError(f"no placeholder for {expression!r}: add one to PLACEHOLDERS")


# python-hcl2 unquotes literals, so a bare reference is told apart by its shape.
REFERENCE = re.compile(r"(var|local|module|data)\.[\w.\[\]\"]+|aws_\w+\.\w+\.\w+")


def render_value(value, local_values):
    if REFERENCE.fullmatch(value):
        return resolve(value, local_values)
    return re.sub(r"\$\{([^}]+)\}", lambda m: resolve(m.group(1), local_values), value)


def render_policy(parsed, name):
    """An aws_iam_policy_document as the JSON policy Terraform would build."""
    documents = typed_blocks(parsed, "data")
    local_values = merged_locals(parsed)
    body = documents[("aws_iam_policy_document", name)]
    statements = []
    for source in body.get("source_policy_documents", []):
        source_name = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)\.json", source).group(1)
        statements += render_policy(parsed, source_name)["Statement"]
    keys = {"actions": "Action", "not_actions": "NotAction", "resources": "Resource", "not_resources": "NotResource"}
    for statement in body.get("statement", []):
        rendered = {"Sid": statement["sid"], "Effect": statement.get("effect", "Allow")}
        for key, json_key in keys.items():
            if key in statement:
                rendered[json_key] = [render_value(v, local_values) for v in statement[key]]
        for condition in statement.get("condition", []):
            values = [render_value(v, local_values) for v in condition["values"]]
            rendered.setdefault("Condition", {}).setdefault(condition["test"], {})[condition["variable"]] = values
        statements.append(rendered)
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture(scope="module")
def policy_documents(parsed):
    names = [name for kind, name in typed_blocks(parsed, "data") if kind == "aws_iam_policy_document"]
    return {name: render_policy(parsed, name) for name in names}


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
        assert guard["Condition"] == {"ArnNotEquals": {"iam:PermissionsBoundary": [BOUNDARY_ARN]}}
        removal = statement(policy, "DenyBoundaryRemoval")
        assert (removal["Effect"], removal["Action"], removal["Resource"]) == (
            "Deny",
            ["iam:DeleteRolePermissionsBoundary"],
            ["*"],
        )
        edits = statement(policy, "DenyBoundaryChanges")
        assert edits["Effect"] == "Deny" and edits["Resource"] == [BOUNDARY_ARN]
        assert {"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"} <= set(edits["Action"])
        # IAM only on this environment's titanic-dev-* roles and policies, never iam:*.
        allowed = [s for s in policy["Statement"] if s["Effect"] == "Allow" and "Action" in s]
        assert not [s["Sid"] for s in allowed if any(a in ("*", "iam:*") for a in s["Action"])]
        roles = statement(policy, "ManageTitanicRoles")
        assert roles["Resource"] == ["arn:aws:iam::111122223333:role/titanic-dev-*"]


def test_the_boundary_allows_no_iam_beyond_the_apply_role(policy_documents):
    boundary, apply = policy_documents["permissions_boundary"], policy_documents["terraform_apply"]
    (everything,) = [s for s in boundary["Statement"] if "NotAction" in s]
    assert everything["Effect"] == "Allow"
    assert {"iam:*", "organizations:*", "account:*"} <= set(everything["NotAction"])
    extra = [s["Sid"] for s in boundary["Statement"] if s not in apply["Statement"] and s is not everything]
    # Karpenter's controller manages the instance profiles of its nodes.
    assert extra == ["KarpenterInstanceProfiles", "KarpenterListInstanceProfiles"]
    actions = [a for sid in extra for a in statement(boundary, sid)["Action"]]
    assert all(a.startswith("iam:") and "InstanceProfile" in a for a in actions)


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
    ("RESOURCE_STAR", "EverythingButIamAndOrganizations"): (
        "the boundary's ceiling for everything but IAM: it grants nothing by itself, each role's own "
        "policies scope the resources"
    ),
}


def parliament(policy):
    """Parliament's findings, each keyed by (issue, Sid of the flagged statement or its actions)."""
    # One statement per line, so a finding's line names its statement.
    text = '{"Version": "2012-10-17", "Statement": [\n' + ",\n".join(map(json.dumps, policy["Statement"])) + "\n]}"
    proc = subprocess.run(
        [tool_path("parliament"), "--json", "--include-community-auditors", "--minimum_severity", "INFO"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == (1 if findings else 0), proc.stderr
    keyed = []
    for finding in findings:
        location = finding["location"]
        if "line" in location:
            where = policy["Statement"][location["line"] - 2]["Sid"]
        else:
            where = ",".join(location.get("actions", []))
        keyed.append((finding["issue"], where))
    return keyed


def test_parliament_finds_nothing_unjustified_in_the_iam_policies(policy_documents):
    """Every IAM policy document the Terraform builds, linted (community auditors included)."""
    assert {"deploy", "terraform_plan", "terraform_apply", "permissions_boundary", "external_secrets"} <= set(
        policy_documents
    )
    unjustified = {}
    for name, policy in policy_documents.items():
        found = [key for key in parliament(policy) if key not in PARLIAMENT_JUSTIFIED]
        if found:
            unjustified[name] = found
    assert not unjustified, unjustified


def test_parliament_reports_what_it_should():
    """The lint can fail: a needless Resource * on iam:PassRole is reported, under its Sid."""
    bad = {"Statement": [{"Sid": "PassAnyRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": ["*"]}]}
    assert ("RESOURCE_STAR", "PassAnyRole") in parliament(bad)


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


def test_workflow_plans_prod_only_on_main_and_applies_through_approved_environments(workflow):
    assert workflow[True]["pull_request"]["paths"][0] == "terraform/**"
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    # Pull requests plan dev; a push to main plans both before the approvals.
    assert plan["strategy"]["matrix"]["environment"] == (
        """${{ fromJSON(github.event_name == 'push' && '["dev", "prod"]' || '["dev"]') }}"""
    )
    assert apply["needs"] == "plan"
    assert apply["environment"] == "terraform-${{ matrix.environment }}"
    assert apply["strategy"]["max-parallel"] == 1
    roles = {
        name: next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
        for name, job in (("plan", plan), ("apply", apply))
    }
    assert "TERRAFORM_PLAN_ROLE_ARN_" in roles["plan"]["with"]["role-to-assume"]
    assert roles["apply"]["with"]["role-to-assume"] == "${{ vars.TERRAFORM_ROLE_ARN }}"
    assert "-lock=false" in next(s["run"] for s in plan["steps"] if s.get("id") == "plan")
    comment = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/github-script@"))
    assert comment["if"] == "github.event_name == 'pull_request'"


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
