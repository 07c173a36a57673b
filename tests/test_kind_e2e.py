"""scripts/kind-e2e: what can run without Docker: its arguments and its preflight errors.

The run itself (kind, Envoy Gateway, the deploy, the checks through the route) needs a Docker
daemon, which the project's build machines lack; the kind-e2e CI job runs it.
"""

import os
import subprocess
import time

import pytest

from tests.support import REPO

pytestmark = pytest.mark.infra

SCRIPT = REPO / "scripts/kind-e2e"


def run(*args, path, env=None):
    started = time.monotonic()
    result = subprocess.run(
        [SCRIPT, *args],
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def fake_tools(tmp_path, docker_info_rc):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("docker", "kind", "kubectl", "helm"):
        rc = docker_info_rc if tool == "docker" else 0
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"{log}"\nexit {rc}\n')
        (bin_dir / tool).chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("args", [["--bogus"], ["--port", "eighty"], ["--name"]])
def test_bad_arguments_print_the_usage(args):
    result, _ = run(*args, path=os.environ["PATH"])
    assert result.returncode == 2
    assert "usage: scripts/kind-e2e" in result.stderr or "--port needs a number" in result.stderr


def test_help():
    result, _ = run("--help", path=os.environ["PATH"])
    assert result.returncode == 0 and "usage: scripts/kind-e2e" in result.stdout


def test_missing_docker_fails_fast_and_clearly():
    result, seconds = run(path="/usr/bin:/bin")  # no docker, kind or helm there
    assert result.returncode == 2
    assert "docker is not installed" in result.stderr and "kind v0.33.0" in result.stderr
    assert seconds < 5


def test_missing_kind_fails_fast_and_clearly(tmp_path):
    bin_dir, _ = fake_tools(tmp_path, docker_info_rc=0)
    (bin_dir / "kind").unlink()
    result, seconds = run(path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 2 and "kind is not installed" in result.stderr
    assert seconds < 5


def test_a_docker_without_a_daemon_fails_fast_before_any_cluster_is_made(tmp_path):
    bin_dir, log = fake_tools(tmp_path, docker_info_rc=1)
    result, seconds = run(path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 2 and "Docker daemon is not reachable" in result.stderr
    assert seconds < 5
    assert log.read_text().splitlines() == ["docker info"], "nothing else may run"
