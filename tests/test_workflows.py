"""The GitHub workflows, their pins and permissions, and the secret-scan script they run.

GitHub itself cannot run here, so these tests check what can be checked offline: actionlint, that every
project command a workflow runs exists, that third-party actions are pinned to commit SHAs, that no job
holds a write permission it does not use, and the secret-scan script against a scratch repository
(scripts/deploy has its own: tests/test_deploy.py).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import REPO, tool_path
from tests.infra_readers import iam
from tests.infra_readers import terraform as tf
from tests.infra_readers.hcl import blocks

pytestmark = pytest.mark.infra

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LOCAL_ACTIONS = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
ACTION_FILES = WORKFLOWS + LOCAL_ACTIONS
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*?))?\s*$")


def load(path):
    return yaml.safe_load(path.read_text())


def jobs(path):
    return load(path)["jobs"]


def steps(document):
    """Steps of a workflow's jobs, or of a composite action."""
    if "runs" in document:
        return document["runs"].get("steps", [])
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def run_commands():
    """(file, command line) for every line of every `run:` in the workflows and local actions."""
    for path in ACTION_FILES:
        for step in steps(load(path)):
            for line in step.get("run", "").replace("\\\n", " ").splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    yield path.name, line


def makefile_targets():
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "deploy.yml", "terraform.yml"}


def test_actionlint_reports_nothing():
    result = subprocess.run(
        [tool_path("actionlint"), "-no-color"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_make_target_a_workflow_runs_exists():
    targets = makefile_targets()
    used = set()
    for _file, line in run_commands():
        for arguments in re.findall(r"(?:^|[;&|(]\s*)make\s+([^;&|)#]*)", line):
            used |= {word for word in arguments.split() if not word.startswith("-") and "=" not in word}
    assert used, "the workflows call no Makefile target"
    assert used <= targets, f"targets missing from the Makefile: {sorted(used - targets)}"
    # CI runs what .ci/run runs (make test: lint, the schema and every check of the deployment files), once.
    assert {"test", "migrations-check"} <= used
    assert not used & {"lint", "schema", "hadolint", "secrets-scan", "k8s-check", "tf-check"}, "make test runs these"


def test_every_script_a_workflow_runs_exists_and_is_executable():
    used = {m for _, line in run_commands() for m in re.findall(r"(?<![\w/.-])(scripts/[\w.-]+)", line)}
    assert "scripts/deploy" in used
    for script in used:
        path = REPO / script
        assert path.is_file(), f"{script} does not exist"
        assert os.access(path, os.X_OK), f"{script} is not executable"


def test_local_actions_and_reusable_workflows_exist():
    for path in ACTION_FILES:
        document = load(path)
        references = [step.get("uses", "") for step in steps(document)]
        references += [job.get("uses", "") for job in document.get("jobs", {}).values()]
        for ref in references:
            if ref.startswith("./"):
                target = REPO / ref
                assert (target / "action.yml").is_file() or target.is_file(), f"{path.name}: {ref} not found"


def test_third_party_actions_are_pinned_to_a_commit_sha_with_a_version_comment():
    versions: dict[str, set[tuple[str, str]]] = {}
    pinned_in_yaml, pinned_in_text = set(), set()
    for path in ACTION_FILES:
        document = load(path)
        pinned_in_yaml |= {(path.name, s["uses"]) for s in steps(document) if "uses" in s}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = USES_LINE.match(line)
            if not match:
                continue
            ref, comment = match["ref"], match["comment"]
            pinned_in_text.add((path.name, ref))
            if ref.startswith("./"):
                continue
            pin = SHA_PIN.match(ref)
            assert pin, f"{path.name}:{number}: {ref} is not pinned to a full commit SHA"
            assert comment and VERSION_COMMENT.match(comment), f"{path.name}:{number}: no `# vX.Y.Z` comment"
            versions.setdefault(pin["action"], set()).add((pin["sha"], comment))
    # Every `uses:` the YAML holds was seen (and checked) line by line.
    assert pinned_in_yaml <= pinned_in_text
    # One version of each action across the repository, so a bump is one reviewable change.
    for action, pins in versions.items():
        assert len(pins) == 1, f"{action} is pinned at several versions: {sorted(pins)}"
    assert "aws-actions/configure-aws-credentials" in versions


def test_workflow_default_permissions_are_read_only():
    for path in WORKFLOWS:
        permissions = load(path).get("permissions")
        assert isinstance(permissions, dict), f"{path.name}: no top-level permissions block"
        assert all(value in {"read", "none"} for value in permissions.values()), f"{path.name}: {permissions}"


def uses_action(job, action):
    return any(step.get("uses", "").startswith(action + "@") for step in job.get("steps", []))


def configures_aws(job):
    """The job assumes an AWS role itself, or calls a local workflow whose jobs do."""
    if uses_action(job, "aws-actions/configure-aws-credentials"):
        return True
    called = job.get("uses", "")
    if called.startswith("./"):
        return any(configures_aws(inner) for inner in jobs(REPO / called).values())
    return False


def comments_on_pull_requests(job):
    return any(
        step.get("uses", "").startswith("actions/github-script@")
        and re.search(r"issues\.(create|update)Comment", step.get("with", {}).get("script", ""))
        for step in job.get("steps", [])
    )


def records_deployments(job):
    """The job posts deployment statuses, or calls a local workflow whose jobs do."""
    if any(
        "/deployments/" in step.get("run", "") and "statuses" in step.get("run", "") for step in job.get("steps", [])
    ):
        return True
    called = job.get("uses", "")
    return called.startswith("./") and any(records_deployments(inner) for inner in jobs(REPO / called).values())


def test_no_job_holds_a_write_permission_it_does_not_use():
    uses_of_write = {
        "id-token": configures_aws,
        "pull-requests": comments_on_pull_requests,
        "deployments": records_deployments,
    }
    for path in WORKFLOWS:
        for name, job in jobs(path).items():
            granted = job.get("permissions", {})
            assert isinstance(granted, dict), f"{path.name}:{name}: permissions must be listed, not {granted!r}"
            for scope, level in granted.items():
                if level != "write":
                    continue
                assert scope in uses_of_write, f"{path.name}:{name}: {scope}: write is never needed here"
                assert uses_of_write[scope](job), f"{path.name}:{name}: {scope}: write but does not use it"
            # OIDC needs the token, so a job that assumes a role must ask for it explicitly.
            if configures_aws(job):
                assert granted.get("id-token") == "write", f"{path.name}:{name}: assumes a role without id-token"


def test_aws_access_is_oidc_only():
    for path in ACTION_FILES:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text, path.name
        assert not re.search(r"secrets\.AWS_", text), path.name
    for path in WORKFLOWS:
        for job in jobs(path).values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                    assert step["with"]["role-to-assume"].startswith("${{ vars"), path.name


def test_ci_runs_on_pull_requests_and_main_and_cancels_superseded_runs():
    ci = load(REPO / ".github/workflows/ci.yml")
    triggers = ci[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    assert "pull_request" in ci["concurrency"]["cancel-in-progress"]
    service = ci["jobs"]["test"]["services"]["postgres"]
    assert service["image"] == "postgres:16" and "pg_isready" in service["options"]
    assert "127.0.0.1:5432" in ci["jobs"]["test"]["env"]["TEST_DATABASE_URL"]
    for job in ci["jobs"].values():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("docker/build-push-action@"):
                assert step["with"]["push"] is False, "CI never pushes images"
                assert "type=gha" in step["with"]["cache-from"] and "type=gha" in step["with"]["cache-to"]
    image_steps = {step.get("uses", "").split("@")[0]: step for step in ci["jobs"]["image"]["steps"]}
    trivy = image_steps["aquasecurity/trivy-action"]["with"]
    assert trivy["severity"] == "CRITICAL,HIGH" and trivy["ignore-unfixed"] is True and trivy["exit-code"] == "1"
    assert "anchore/sbom-action" in image_steps


def test_deploy_builds_both_architectures_tagged_with_the_commit_and_deploys_dev_then_prod():
    deploy = jobs(REPO / ".github/workflows/deploy.yml")
    build = next(s for s in deploy["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert set(build["with"]["platforms"].split(",")) == {"linux/arm64", "linux/amd64"}
    # Each tag (the commit SHA; X.Y.Z for a vX.Y.Z tag) is pushed once: only those not in ECR yet.
    assert build["with"]["tags"] == "${{ steps.pushed.outputs.tags }}"
    assert build["with"]["build-args"].splitlines() == [
        "VERSION=${{ steps.pushed.outputs.version }}",
        "REVISION=${{ github.sha }}",
    ]
    tagging = next(s for s in deploy["image"]["steps"] if s.get("id") == "pushed")["run"]
    assert "GITHUB_REF_NAME#v" in tagging and "git describe" in tagging and "describe-images" in tagging
    assert load(REPO / ".github/workflows/deploy.yml")[True]["push"]["tags"] == ["v*.*.*"]
    assert deploy["dev"]["if"] == "github.ref == 'refs/heads/main'", "tags build images; only main deploys"
    assert deploy["image"]["env"]["IMAGE"].endswith(":${{ github.sha }}")
    assert deploy["dev"]["with"]["environment"] == "dev" and deploy["prod"]["with"]["environment"] == "prod"
    assert "dev" in deploy["prod"]["needs"]
    for job in ("dev", "prod"):
        assert deploy[job]["with"]["image"].endswith(":${{ github.sha }}")
    environment_job = jobs(REPO / ".github/workflows/deploy-environment.yml")["deploy"]
    assert environment_job["environment"]["name"] == "${{ inputs.environment }}"
    assert environment_job["concurrency"] == {
        "group": "deploy-${{ inputs.environment }}",
        "cancel-in-progress": False,
    }
    steps = environment_job["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0, "scripts/deploy orders commits with git merge-base"
    deploy_step = next(s for s in steps if 'scripts/deploy "$ENVIRONMENT" "$IMAGE"' in s.get("run", ""))
    assert "DEPLOY_RESULT_FILE" in deploy_step["env"]
    reports = [s for s in steps if "scripts/deploy-report" in s.get("run", "")]
    assert [s["run"].split('"$RESULT" ')[1].split()[0] for s in reports] == ["summary", "status", "chat"]
    assert all(s["if"].startswith("always()") for s in reports)


def run_dns_step(tmp_path, resolves_on_call, wait_seconds):
    """The deploy job's wait for the public name, with a getent that answers from its n-th call on
    (0: never) and a sleep that returns at once."""
    job = jobs(REPO / ".github/workflows/deploy-environment.yml")["deploy"]
    [step] = [s for s in job["steps"] if s.get("id") == "dns"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "getent").write_text(
        f'#!/bin/sh\necho "$*" >>{tmp_path}/getent.log\n'
        f'[ {resolves_on_call} -gt 0 ] && [ "$(wc -l <{tmp_path}/getent.log)" -ge {resolves_on_call} ]\n'
    )
    (bin_dir / "sleep").write_text("#!/bin/sh\n")
    for tool in ("getent", "sleep"):
        (bin_dir / tool).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "APP_URL": "https://titanic-dev.example.com/",
        "DNS_WAIT_SECONDS": str(wait_seconds),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30)
    output, summary, lookups = ((tmp_path / name) for name in ("output", "summary", "getent.log"))
    read = [path.read_text() if path.exists() else "" for path in (output, summary, lookups)]
    return proc, read[0], read[1], read[2].splitlines()


def test_the_load_test_waits_for_the_public_name_then_runs(tmp_path):
    proc, output, summary, lookups = run_dns_step(tmp_path, resolves_on_call=3, wait_seconds=300)
    assert proc.returncode == 0, proc.stderr
    assert output == "resolved=true\n" and summary == ""
    assert lookups == ["hosts titanic-dev.example.com"] * 3


def test_a_name_that_never_resolves_skips_the_load_test_and_says_why(tmp_path):
    """A good deploy must not fail because DNS has not propagated yet."""
    proc, output, summary, _ = run_dns_step(tmp_path, resolves_on_call=0, wait_seconds=0)
    assert proc.returncode == 0, proc.stderr
    assert output == "resolved=false\n"
    assert "::notice title=Load test skipped::titanic-dev.example.com did not resolve within 0s" in proc.stdout
    assert summary.startswith("**Load test skipped:** titanic-dev.example.com did not resolve")
    job = jobs(REPO / ".github/workflows/deploy-environment.yml")["deploy"]
    gated = [s for s in job["steps"] if "steps.dns.outputs.resolved" in str(s.get("if", ""))]
    assert any("make loadtest" in s.get("run", "") for s in gated)
    assert all(s["if"] == "inputs.load-test && steps.dns.outputs.resolved == 'true'" for s in gated)


def test_every_job_that_runs_go_sets_go_up_first():
    """A runner image's default Go is not to be relied on: a job that runs `go` installs it first."""
    for path in WORKFLOWS:
        for name, job in jobs(path).items():
            commands = [s.get("run", "") for s in job.get("steps", [])]
            runs_go = [i for i, run in enumerate(commands) if re.search(r"(^|\n|\$\()\s*go ", run)]
            if runs_go:
                setup = [i for i, s in enumerate(job["steps"]) if s.get("uses", "").startswith("actions/setup-go@")]
                assert setup and setup[0] < runs_go[0], f"{path.name} {name}: go before actions/setup-go"


def test_dependabot_covers_pip_actions_and_docker():
    updates = {u["package-ecosystem"]: u for u in load(REPO / ".github/dependabot.yml")["updates"]}
    assert updates["pip"]["directory"] == "/requirements"
    assert "/" in updates["github-actions"]["directories"]
    assert updates["docker"]["directory"] == "/docker"


# --- scripts/secrets-scan ----------------------------------------------------------------------


def fake_aws_credentials():
    # Assembled at run time so this file itself holds no key for the scanner to find.
    key_id = "AKIA" + "QYLPMN5HFIQR7XQE"
    access = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYzEXAMPLEKEY"  # pragma: allowlist secret
    return f'aws_access_key_id = "{key_id}"\naws_secret_access_key = "{access}"\n'


def secrets_scan_in(tmp_path, files):
    """Run scripts/secrets-scan in a scratch git repository holding `files` and the real baseline."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts/secrets-scan", tmp_path / "scripts/secrets-scan")
    shutil.copy2(REPO / ".secrets.baseline", tmp_path / ".secrets.baseline")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    hook_dir = str(Path(sys.executable).parent)  # detect-secrets lives in the main virtualenv
    env = {**os.environ, "PATH": hook_dir + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["scripts/secrets-scan"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_secrets_scan_fails_on_a_new_aws_key(tmp_path):
    result = secrets_scan_in(tmp_path, {"settings_local.py": "DEBUG = True\n" + fake_aws_credentials()})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AWS Access Key" in result.stdout
    assert "settings_local.py" in result.stdout


def test_secrets_scan_passes_the_same_tree_without_the_key(tmp_path):
    result = secrets_scan_in(tmp_path, {"settings_local.py": "DEBUG = True\n"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_repository_scans_clean():
    before = (REPO / ".secrets.baseline").read_bytes()
    result = subprocess.run(["scripts/secrets-scan"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (REPO / ".secrets.baseline").read_bytes() == before, "the scan must not rewrite the baseline"


def test_the_baseline_excludes_generated_and_vendored_files():
    text = (REPO / ".secrets.baseline").read_text()
    for excluded in (r"\\.venv-tools", "staticfiles", "fixtures/", r"\\.lock"):
        assert excluded in text


# --- OIDC: every job that assumes an AWS role has a subject that role trusts -------------------
#
# Each workflow is run on paper for every event its `on` lists (a push to main, a vX.Y.Z tag, a
# pull request from this repository, a manual run on main), job by job and matrix entry by matrix
# entry, through reusable workflows, evaluating `if`, `environment` and `role-to-assume` as GitHub
# would. The token's `sub` follows GitHub's rules (environment, else pull_request, else the ref);
# the role comes from the variable named in role-to-assume; its trust policy and permissions come
# from terraform/ (tests/infra_readers/terraform.py) and are evaluated with tests/infra_readers/iam.py.

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
TOKEN = re.compile(r"\s*('(?:[^']|'')*'|&&|\|\||==|!=|!|[()\[\],]|[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*|\d+)")


class Context(dict):
    """A GitHub expression context: missing properties are null, names are case-insensitive."""

    def __getattr__(self, name):
        value = self.get(name, self.get(name.lower()))
        return Context(value) if isinstance(value, dict) else value

    def __getitem__(self, name):
        return self.__getattr__(str(name))


class Variables(dict):
    """vars.NAME stands for the variable itself: the test maps it to the role it names."""

    def __getattr__(self, name):
        return f"vars.{name.upper()}"

    def __getitem__(self, name):
        return self.__getattr__(str(name))


def _format(template, *args):
    return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), template)


FUNCTIONS = {
    "startsWith": lambda s, p: str(s or "").lower().startswith(str(p).lower()),
    "endsWith": lambda s, p: str(s or "").lower().endswith(str(p).lower()),
    "contains": lambda s, p: str(p).lower() in str(s or "").lower(),
    "fromJSON": json.loads,
    "format": _format,
    "always": lambda: True,
    "success": lambda: True,
    "failure": lambda: False,
    "cancelled": lambda: False,
}


def evaluate(expression, contexts):
    """One GitHub Actions expression (the part inside ${{ }}), as Python."""
    python, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = TOKEN.match(expression, position)
        assert match, f"cannot read {expression[position:]!r}"
        token, position = match.group(1), match.end()
        if token.startswith("'"):
            python.append(repr(token[1:-1].replace("''", "'")))
        elif token in ("&&", "||", "!"):
            python.append({"&&": " and ", "||": " or ", "!": " not "}[token])
        elif token in ("true", "false", "null"):
            python.append({"true": "True", "false": "False", "null": "None"}[token])
        elif re.match(r"[A-Za-z_]", token):
            head, *rest = token.split(".")
            assert head in contexts or head in FUNCTIONS, f"unknown name {head} in {expression!r}"
            python.append(head + "".join(f"[{part!r}]" for part in rest))
        else:
            python.append(token)
    # Only names checked above and literals, with no builtins: an expression of the repository's own workflows.
    return eval("".join(python), {"__builtins__": {}}, {**FUNCTIONS, **contexts})  # noqa: S307


def interpolate(value, contexts):
    """A workflow value: an expression alone keeps its type, text with expressions becomes a string."""
    if not isinstance(value, str):
        return value
    whole = EXPRESSION.fullmatch(value.strip())
    if whole and "${{" not in whole.group(1):
        return evaluate(whole.group(1), contexts)
    return EXPRESSION.sub(lambda m: str(evaluate(m.group(1), contexts) or ""), value)


def scenarios(document):
    """The events a workflow runs on, as the github context each gives its jobs."""
    triggers = document[True]
    base = {"repository": tf.REPOSITORY, "sha": "0" * 40}
    main = {**base, "ref": "refs/heads/main", "ref_name": "main"}
    found: list[dict[str, Any]] = []
    if "push" in triggers:
        push = triggers["push"] or {}
        if "main" in push.get("branches", ["main"]):
            found.append({**main, "event_name": "push"})
        if push.get("tags"):
            found.append({**base, "event_name": "push", "ref": "refs/tags/v1.2.3", "ref_name": "v1.2.3"})
    if "pull_request" in triggers:
        head = {"pull_request": {"number": 7, "head": {"repo": {"full_name": tf.REPOSITORY}}}}
        found.append({**base, "event_name": "pull_request", "ref": "refs/pull/7/merge", "event": head})
    for manual in ("workflow_dispatch", "schedule"):
        if manual in triggers:
            found.append({**main, "event_name": manual})
    return found


def assumed_roles(path, github, inputs=None, caller=""):
    """(where, sub, variable, GitHub environment) for every role-to-assume the workflow reaches."""
    document = load(path)
    results: dict[str, dict] = {}  # needs.<job>.result: skipped when its `if` was false
    for name, job in document["jobs"].items():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        matrix_values = job.get("strategy", {}).get("matrix", {})
        contexts = {"github": Context(github), "inputs": Context(inputs or {}), "vars": Variables()}
        contexts |= {"needs": Context({n: results[n] for n in needs}), "secrets": Context()}
        condition = job.get("if", "success()").removeprefix("${{").removesuffix("}}")
        # Without a status function, a job runs only when every job it needs succeeded.
        if not re.search(r"\b(always|cancelled|failure|success)\(", condition):
            condition = f"success() && ({condition})"
        runs = all(results[n]["result"] == "success" for n in needs) or "success()" not in condition
        entries: list[dict[str, Any]] = [{}]
        if matrix_values:
            key, values = next(iter(matrix_values.items()))
            entries = [{key: v} for v in interpolate(values, contexts)]
        results[name] = {"result": "skipped"}
        for entry in entries:
            scoped = {**contexts, "matrix": Context(entry)}
            if not runs or not interpolate("${{ " + condition + " }}", scoped):
                continue
            results[name] = {"result": "success"}
            where = f"{caller}{path.name}:{name}{entry or ''} on {github['event_name']} {github['ref']}"
            if "uses" in job:
                called = {k: interpolate(v, scoped) for k, v in job.get("with", {}).items()}
                yield from assumed_roles(REPO / job["uses"], github, called, caller=where + " -> ")
                continue
            environment = job.get("environment")
            if isinstance(environment, dict):
                environment = environment.get("name")
            environment = interpolate(environment, scoped) or ""
            if environment:
                sub = f"repo:{tf.REPOSITORY}:environment:{environment}"
            elif github["event_name"] == "pull_request":
                sub = f"repo:{tf.REPOSITORY}:pull_request"
            else:
                sub = f"repo:{tf.REPOSITORY}:ref:{github['ref']}"
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                    variable = interpolate(step["with"]["role-to-assume"], scoped)
                    yield where, sub, variable, environment


def role_for(variable, environment):
    """The Terraform role a workflow variable holds. Convention (terraform/README.md, "Which output
    feeds what"): the variable is the output's name in capitals, `_<ENV>` appended for a per-environment
    repository variable; without the suffix, a GitHub environment named <env> or ending in -<env>
    says which; a repository variable without either belongs to the environment that owns the shared
    resources (dev)."""
    name = variable.removeprefix("vars.")
    match = re.fullmatch(r"(\w+?)(?:_(DEV|PROD))?", name)
    assert match, name
    output, env = match.group(1).lower(), (match.group(2) or "").lower()
    if not env:
        found = re.search(r"(?:^|-)(dev|prod)$", environment)
        env = found.group(1) if found else next(e for e in tf.ENVIRONMENTS if tf.tfvars(e)["create_shared_resources"])
    outputs = blocks(tf.parsed(), "output")
    assert output in outputs, f"{variable}: no Terraform output {output}"
    value = outputs[output]["value"]
    module = re.search(r'module\.github_role\["([\w-]+)"\]|module\.(\w+)\.', value)
    assert module, f"output {output} names no role module: {value}"
    if module.group(1):
        return env, f"titanic-{env}-{module.group(1)}"
    return env, tf.Renderer(env).render(blocks(tf.parsed(), "module")[module.group(2)]["name"])


def workflow_roles():
    found = []
    for path in WORKFLOWS:
        document = load(path)
        if "workflow_call" in document[True]:
            continue  # reached through its callers
        for github in scenarios(document):
            for inputs in dispatch_inputs(document) if github["event_name"] == "workflow_dispatch" else [{}]:
                found += list(assumed_roles(path, github, inputs))
    return found


def dispatch_inputs(document):
    """Every combination of a manual run's choice inputs (the other inputs at their defaults)."""
    declared = (document[True]["workflow_dispatch"] or {}).get("inputs", {})
    combinations: list[dict[str, Any]] = [{}]
    for name, spec in declared.items():
        values = spec.get("options") if spec.get("type") == "choice" else [spec.get("default")]
        combinations = [{**combination, name: value} for combination in combinations for value in values]
    return combinations


def token_trusted(role, sub):
    provider = "token.actions.githubusercontent.com"
    context = {f"{provider}:sub": sub, f"{provider}:aud": "sts.amazonaws.com", f"{provider}:iss": f"https://{provider}"}
    trust = tf.github_trust_policy(role.subjects or [])
    return iam.trust_allows(trust, "Federated", tf.OIDC_PROVIDER_ARN, "sts:AssumeRoleWithWebIdentity", context)


def test_the_workflow_expressions_are_read_as_github_does():
    contexts = {"github": Context({"ref": "refs/tags/v1.2.3", "event_name": "push"}), "vars": Variables()}
    assert interpolate("${{ startsWith(github.ref, 'refs/tags/v') && 'release' || '' }}", contexts) == "release"
    contexts["github"] = Context({"ref": "refs/heads/main", "event_name": "push"})
    assert interpolate("${{ startsWith(github.ref, 'refs/tags/v') && 'release' || '' }}", contexts) == ""
    assert interpolate("${{ vars[format('ROLE_{0}', 'dev')] }}", contexts) == "vars.ROLE_DEV"
    assert interpolate("terraform-${{ 'prod' }}", contexts) == "terraform-prod"
    assert interpolate("${{ !cancelled() && github.event_name != 'push' }}", contexts) is False


def test_every_job_that_assumes_a_role_presents_a_subject_the_role_trusts():
    found = workflow_roles()
    # The jobs that deploy, push images, tag deployed images, plan and apply, on their events.
    variables = {variable for _where, _sub, variable, _env in found}
    assert {
        "vars.IMAGE_PUSH_ROLE_ARN",
        "vars.DEPLOY_ROLE_ARN",
        "vars.TERRAFORM_ROLE_ARN",
        "vars.TERRAFORM_PLAN_ROLE_ARN_DEV",
        "vars.TERRAFORM_PLAN_ROLE_ARN_PROD",
    } <= variables
    untrusted = []
    for where, sub, variable, environment in found:
        env, name = role_for(variable, environment)
        role = tf.roles(env).get(name)
        assert role is not None, f"{where}: {variable} names {name}, which {env} does not create"
        if not token_trusted(role, sub):
            untrusted.append(f"{where}: {sub} is not trusted by {name}")
    assert not untrusted, "\n".join(untrusted)


def test_a_tag_build_gets_the_push_role_and_no_deploy_role():
    tag_jobs = [(w, sub, v, e) for w, sub, v, e in workflow_roles() if "refs/tags/" in w]
    assert tag_jobs, "no job runs on a vX.Y.Z tag"
    for where, sub, variable, environment in tag_jobs:
        assert sub == f"repo:{tf.REPOSITORY}:environment:release", where
        assert role_for(variable, environment)[1] == "titanic-dev-image-push", where
    # And nothing that can reach a cluster trusts the release environment.
    for env in tf.ENVIRONMENTS:
        for role in tf.roles(env).values():
            if role.subjects and token_trusted(role, f"repo:{tf.REPOSITORY}:environment:release"):
                assert role.name.endswith("-image-push"), role


WRITES = {
    "state": [
        (action, f"arn:aws:s3:::{tf.STATE_BUCKET}/titanic/{env}.tfstate{suffix}")
        for action in ("s3:PutObject", "s3:DeleteObject")
        for env in tf.ENVIRONMENTS
        for suffix in ("", ".tflock")
    ],
    "ECR": [
        (action, tf.ECR_REPOSITORY_ARN)
        for action in ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:BatchDeleteImage", "ecr:PutLifecyclePolicy")
    ],
    "EKS": [
        (action, f"arn:aws:eks:{tf.REGION}:{tf.ACCOUNT}:cluster/titanic-{env}")
        for action in ("eks:CreateAccessEntry", "eks:UpdateClusterConfig", "eks:CreatePodIdentityAssociation")
        for env in tf.ENVIRONMENTS
    ],
}


def test_no_pull_request_job_gets_a_role_that_writes_state_ecr_or_eks():
    pr_jobs = [(w, sub, v, e) for w, sub, v, e in workflow_roles() if sub.endswith(":pull_request")]
    assert pr_jobs, "terraform.yml plans dev on pull requests"
    access_entries = blocks(tf.parsed(), "module")["eks"]["access_entries"]
    for where, _sub, variable, environment in pr_jobs:
        env, name = role_for(variable, environment)
        role = tf.roles(env)[name]
        for kind, writes in WRITES.items():
            for action, arn in writes:
                tags = {"Environment": "shared" if kind == "ECR" else arn.rsplit("titanic-", 1)[-1]}
                request = iam.request(action, arn, tags)
                assert not iam.is_allowed(request, role.identity_policies, role.boundary), f"{where}: {action} {arn}"
        # No Kubernetes access either: the role has no EKS access entry.
        key = name.removeprefix(f"titanic-{env}-")
        assert f'module.github_role["{key}"]' not in access_entries, f"{where}: {name} has an access entry"


# --- the deploy markers (keep-deployed-image.yml) ---------------------------------------------

FAKE_AWS = r"""#!/usr/bin/env python3
# A stand-in for `aws ecr` over a JSON file of {tag: digest} and {digest: manifest}.
import json, os, sys
state_file = os.environ["FAKE_ECR"]
state = json.load(open(state_file))
args = sys.argv[1:]
def arg(name):
    return args[args.index(name) + 1]
with open(os.environ["FAKE_ECR_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
command = args[1]
if command == "describe-images":
    kind, _, value = arg("--image-ids").partition("=")
    digest = state["tags"].get(value) if kind == "imageTag" else value
    if digest is None:
        print("ImageNotFoundException", file=sys.stderr)
        sys.exit(254)
    print(digest)
elif command == "batch-get-image":
    digest = arg("--image-ids").partition("=")[2]
    media = "application/vnd.oci.image.index.v1+json"
    print(json.dumps({"images": [{"imageManifest": state["manifests"][digest], "imageManifestMediaType": media}]}))
elif command == "put-image":
    manifest = open(arg("--image-manifest").removeprefix("file://")).read()
    if manifest != state["manifests"][arg("--image-digest")]:
        print("ImageDigestDoesNotMatchException", file=sys.stderr)
        sys.exit(254)
    state["tags"][arg("--image-tag")] = arg("--image-digest")
    json.dump(state, open(state_file, "w"))
"""


def run_keep_step(tmp_path, state):
    tool_path("jq")  # the step runs it from PATH
    job = jobs(REPO / ".github/workflows/keep-deployed-image.yml")["tag"]
    script = next(s for s in job["steps"] if "run" in s)
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "aws").write_text(FAKE_AWS)
    (tmp_path / "bin" / "aws").chmod(0o755)
    (tmp_path / "ecr.json").write_text(json.dumps(state))
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "FAKE_ECR": str(tmp_path / "ecr.json"),
        "FAKE_ECR_LOG": str(tmp_path / "calls.log"),
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_SHA": "a" * 40,
        "REPOSITORY_URL": "111122223333.dkr.ecr.us-east-1.amazonaws.com/titanic-api",
        "TAG": "prod-" + "a" * 40,
    }
    proc = subprocess.run(["bash", "-e", "-c", script["run"]], env=env, capture_output=True, text=True, timeout=30)
    calls = [json.loads(line)[1] for line in (tmp_path / "calls.log").read_text().splitlines()]
    return proc, json.loads((tmp_path / "ecr.json").read_text()), calls


def test_a_deployed_image_is_tagged_on_the_same_digest_once(tmp_path):
    # An index manifest as buildx writes it (no newline at the end) must keep its digest.
    manifest = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    state = {"tags": {"a" * 40: "sha256:index"}, "manifests": {"sha256:index": manifest}}
    proc, after, calls = run_keep_step(tmp_path, state)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert after["tags"]["prod-" + "a" * 40] == "sha256:index"
    assert calls[-1] == "put-image"
    # A re-run finds the tag and changes nothing.
    proc, again, calls = run_keep_step(tmp_path, after)
    assert proc.returncode == 0 and again == after and calls.count("put-image") == 1


def test_the_deploy_markers_run_after_each_deploy():
    deploy = jobs(REPO / ".github/workflows/deploy.yml")
    for env in ("dev", "prod"):
        job = deploy[f"{env}-image-kept"]
        assert job["needs"] == env and job["with"] == {"environment": env}
        assert job["uses"] == "./.github/workflows/keep-deployed-image.yml"
        # Also after a failed deploy (a failed rollback may leave the image running), not after a skip.
        assert f"needs.{env}.result == 'failure'" in job["if"] and "!cancelled()" in job["if"]
    marker = next(s for s in jobs(REPO / ".github/workflows/keep-deployed-image.yml")["tag"]["steps"] if "run" in s)
    assert marker["env"]["TAG"] == "${{ inputs.environment }}-${{ github.sha }}"
    assert "--image-digest" in marker["run"]
    # The lifecycle rules count these tags (terraform/ecr-lifecycle-policy.json).
    patterns = {
        p
        for r in json.loads((REPO / "terraform/ecr-lifecycle-policy.json").read_text())["rules"]
        for p in r["selection"].get("tagPatternList", [])
    }
    assert {"dev-*", "prod-*"} <= patterns


# --- the image job: a tag already in ECR must be this commit's build ----------------------------

FAKE_IMAGE_TOOLS = r"""#!/usr/bin/env python3
# Stand-ins for `aws ecr describe-images` and `docker buildx imagetools inspect --format '{{ json .Image }}'`
# over a JSON file {tag: revision label of the image it holds}.
import json, os, sys
tags = json.load(open(os.environ["FAKE_TAGS"]))
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "aws":
    tag = args[args.index("--image-ids") + 1].partition("=")[2]
    sys.exit(0 if tag in tags else 254)
tag = args[args.index("inspect") + 1].rpartition(":")[2]
config = {"config": {"Labels": {"org.opencontainers.image.revision": tags[tag]}}}
print(json.dumps({"linux/amd64": config, "linux/arm64": config}))
"""


def run_image_tags_step(tmp_path, in_ecr):
    tool_path("jq")  # the step runs it from PATH
    job = jobs(REPO / ".github/workflows/deploy.yml")["image"]
    script = next(s for s in job["steps"] if s.get("id") == "pushed")["run"]
    (tmp_path / "bin").mkdir(exist_ok=True)
    for name in ("aws", "docker"):
        (tmp_path / "bin" / name).write_text(FAKE_IMAGE_TOOLS)
        (tmp_path / "bin" / name).chmod(0o755)
    (tmp_path / "tags.json").write_text(json.dumps(in_ecr))
    output = tmp_path / "output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "FAKE_TAGS": str(tmp_path / "tags.json"),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_REF": "refs/tags/v1.2.3",
        "GITHUB_REF_NAME": "v1.2.3",
        "GITHUB_SHA": "a" * 40,
        "REPOSITORY_URL": "111122223333.dkr.ecr.us-east-1.amazonaws.com/titanic-api",
    }
    proc = subprocess.run(["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    return proc, dict(line.split("=", 1) for line in output.read_text().splitlines())


def test_a_tag_already_in_ecr_is_used_only_when_built_from_this_commit(tmp_path):
    """Anyone who could push might have taken the next X.Y.Z or a future <sha> tag first; the job
    would skip the build and release that image. It checks the image's revision label instead."""
    url, sha = "111122223333.dkr.ecr.us-east-1.amazonaws.com/titanic-api", "a" * 40
    proc, outputs = run_image_tags_step(tmp_path, {})
    assert proc.returncode == 0 and outputs["tags"] == f"{url}:{sha},{url}:1.2.3" and outputs["exists"] == "false"
    proc, outputs = run_image_tags_step(tmp_path, {sha: sha})  # a re-run after main pushed the commit
    assert proc.returncode == 0 and outputs["tags"] == f"{url}:1.2.3", proc.stdout + proc.stderr
    proc, outputs = run_image_tags_step(tmp_path, {sha: sha, "1.2.3": sha})
    assert proc.returncode == 0 and outputs["exists"] == "true"
    for planted in ({"1.2.3": "b" * 40}, {sha: "b" * 40}, {sha: ""}):
        proc, outputs = run_image_tags_step(tmp_path, planted)
        assert proc.returncode == 1 and "::error::" in proc.stdout, planted
        assert "tags" not in outputs
