"""The container image: the smoke test builds and runs the real image with podman
(scripts/container-smoke: unprivileged, read-only, no tests or pip inside, its HEALTHCHECK, JSON logs,
labels); hadolint and the base image's pin. The compose stack: tests/test_compose.py."""

import re
import subprocess

import pytest

from tests.harness import REPO, tool_path
from tests.infra_readers.dockerfile import instructions

pytestmark = pytest.mark.infra

DOCKERFILE = REPO / "docker" / "Dockerfile"
SMOKE = REPO / "scripts" / "container-smoke"


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
