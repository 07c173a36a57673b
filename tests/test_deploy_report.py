"""scripts/deploy-report: the job summary, deployment status and chat message built from a deploy result."""

import json
import os
import subprocess
import sys

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.infra

SHA = "0123456789abcdef0123456789abcdef01234567"  # pragma: allowlist secret (a commit SHA)
RESULT = {
    "outcome": "failure",
    "message": "deploying x failed; rolled back to revision 3 (registry/titanic-api:" + "a" * 40 + ")",
    "environment": "prod",
    "image": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/titanic-api:{SHA}",
    "previous_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/titanic-api:" + "a" * 40,
    "rolled_back_to": "3",
    "app_url": "https://titanic.example.com",
    "duration_seconds": 125,
}
GITHUB = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42"}


def report(tmp_path, what, result=RESULT, **env):
    path = tmp_path / "result.json"
    if result is not None:
        path.write_text(json.dumps(result))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | env
    process = subprocess.run(
        [sys.executable, REPO / "scripts/deploy-report", path, what], env=environ, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_summary_names_image_commit_duration_outcome_and_rollback(tmp_path):
    text = report(tmp_path, "summary")
    assert "### Deploy ❌ prod: failure, rolled back to revision 3" in text
    assert f"| Commit | `{SHA}` |" in text
    assert "| Duration | 2 min 5 s |" in text
    assert "| Rolled back to | revision 3 |" in text


def test_status_is_a_github_deployment_status(tmp_path):
    body = json.loads(report(tmp_path, "status", **GITHUB))
    assert body["state"] == "failure" and body["environment"] == "prod"
    assert body["environment_url"] == "https://titanic.example.com"
    assert body["log_url"] == "https://github.com/o/r/actions/runs/42"
    assert len(body["description"]) <= 140 and body["description"].startswith("deploying x failed; rolled back")


@pytest.mark.parametrize(("outcome", "state"), [("success", "success"), ("skipped", "inactive")])
def test_status_states(tmp_path, outcome, state):
    body = json.loads(report(tmp_path, "status", result={**RESULT, "outcome": outcome, "rolled_back_to": ""}))
    assert body["state"] == state
    assert "log_url" not in body


def test_chat_message(tmp_path):
    text = json.loads(report(tmp_path, "chat", **GITHUB))["text"]
    assert text.startswith("Deploy ❌ prod: failure, rolled back to revision 3 - 0123456789ab - deploying x")
    assert text.endswith("https://github.com/o/r/actions/runs/42")


def test_a_deploy_that_reported_nothing_is_a_failure(tmp_path):
    body = json.loads(report(tmp_path, "status", result=None))
    assert body["state"] == "failure" and "stopped before reporting" in body["description"]
    assert "nothing (first release)" in report(tmp_path, "summary", result=None)


def test_usage_errors(tmp_path):
    process = subprocess.run([sys.executable, REPO / "scripts/deploy-report", "x"], capture_output=True, text=True)
    assert process.returncode == 1 and "summary" in process.stderr
