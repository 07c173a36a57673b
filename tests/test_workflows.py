"""The GitHub workflows, their pins and permissions, and the secret-scan script they run.

GitHub itself cannot run here, so these tests check what can be checked offline: actionlint, that every
project command a workflow runs exists, that third-party actions are pinned to commit SHAs, that no job
holds a write permission it does not use, and the secret-scan script against a scratch repository
(scripts/deploy has its own: tests/test_deploy.py).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, tool_path

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
    # The checks .ci/run runs are the ones CI runs.
    assert {"lint", "test", "migrations-check", "schema", "hadolint", "secrets-scan", "k8s-check", "tf-check"} <= used


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
    versions = {}
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
