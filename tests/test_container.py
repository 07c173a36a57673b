"""The container image: the smoke test builds and runs the real image with podman
(scripts/container-smoke); the Dockerfile's rules are checked as text. The compose stack:
tests/test_compose.py."""

import re
import subprocess

import pytest

from tests.harness import REPO, tool_path
from tests.infra_readers.dockerfile import exec_form, healthcheck_command, instructions, stages

pytestmark = pytest.mark.infra

DOCKERFILE = REPO / "docker" / "Dockerfile"
SMOKE = REPO / "scripts" / "container-smoke"
SERVE = ["gunicorn", "--config", "titanic/gunicorn.conf.py", "titanic.wsgi"]


@pytest.fixture(scope="module")
def runtime():
    return stages(DOCKERFILE.read_text())[-1]


# --- the image, built and run for real -------------------------------------------------------------


@pytest.mark.e2e
def test_container_smoke():
    """Build with podman, migrate + loadcsv through the image, serve read-only as UID 10001, check over HTTP."""
    result = subprocess.run(
        [str(SMOKE)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20 * 60
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "container smoke test passed" in result.stdout
    assert re.search(r"added over the base: [\d.]+ MB", result.stdout)


# --- the Dockerfile ---------------------------------------------------------------------------------


def test_hadolint_reports_nothing():
    result = subprocess.run([tool_path("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_base_image_is_a_pinned_build_argument():
    text = DOCKERFILE.read_text()
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default)
    froms = [args for name, args in instructions(text) if name == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]
    # Both bases must work: the venv comes from whatever python3 the base has.
    assert "python3 -m venv /opt/venv" in text
    assert "-r /tmp/requirements.txt" in text and "COPY requirements/base.txt /tmp/requirements.txt" in text


def test_runtime_stage_runs_unprivileged_with_a_curl_free_healthcheck(runtime):
    names = [name for name, _ in runtime]
    assert ("USER", "10001:10001") in runtime
    assert names.index("USER") > max(i for i, name in enumerate(names) if name in ("RUN", "COPY"))
    command = healthcheck_command(runtime)
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]
    assert "http://127.0.0.1:8000/health" in command[2]
    everything = " ".join(args for _, args in instructions(DOCKERFILE.read_text()))
    assert not re.search(r"\b(curl|wget)\b", everything)
    assert ("EXPOSE", "8000") in runtime
    (cmd,) = [args for name, args in runtime if name == "CMD"]
    assert exec_form(cmd) == SERVE


def test_runtime_stage_holds_only_the_venv_and_the_app(runtime):
    copies = [args for name, args in runtime if name == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]
    runs = " ".join(args for name, args in runtime if name == "RUN")
    assert "pip" not in runs and "apt-get" not in runs
    env = " ".join(args for name, args in runtime if name == "ENV")
    for setting in ("PATH=/opt/venv/bin:$PATH", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LOG_FORMAT=json"):
        assert setting in env
    labels = " ".join(args for name, args in runtime if name == "LABEL")
    for key in ("version", "revision", "source", "created", "title", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_build_context_is_an_allowlist_without_tests():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    assert allowed == {
        "docker/Dockerfile",
        "requirements/base.txt",
        "manage.py",
        "fixtures/",
        "titanic/",
        "passengers/",
    }
    assert "passengers/tests/" in rules and "**/__pycache__/" in rules
    assert "titanic/settings_test.py" in rules
