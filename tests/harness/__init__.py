"""What the tests, the benchmark and the load test run real processes with (tested in tests/test_harness.py).

- tool_path: the commands they run (.venv-tools, then PATH), skipped or failed when missing.
- net: free ports and TcpProxy, a proxy in front of PostgreSQL that can refuse, cut or slow it.
- postgres: psql, throw-away databases loaded with the dataset, manage.py and API tokens.
- gunicorn: the service under gunicorn with the project's config, ready when start() returns.
- pgcluster: a PostgreSQL cluster of its own (WAL archiving, point-in-time recovery).
- rds_iam: RDS IAM database authentication reproduced on loopback.
"""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET_KEY = "tests-only-not-secret"  # pragma: allowlist secret


def project_env(**overrides: str) -> dict[str, str]:
    """The environment of a process of the project (manage.py, gunicorn): this one's, with the
    production settings even under pytest (which exports its own DJANGO_SETTINGS_MODULE)."""
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "titanic.settings", "DJANGO_SECRET_KEY": SECRET_KEY, **overrides}


# Where a missing command comes from; the others are expected on PATH.
INSTALLED_BY = {
    **dict.fromkeys(["checkov", "hadolint", "actionlint", "parliament"], "make tools"),
    **dict.fromkeys(["chromium", "podman", "prometheus", "promtool", "wrk", "valgrind"], "make system-packages"),
}
# Set by `make test` and `make test-postgres` (so in CI): there a missing tool fails the test instead of skipping it.
REQUIRE_TOOLS = "TITANIC_REQUIRE_TOOLS"


def tool_path(name: str) -> str:
    """The path of a command, from .venv-tools first, then PATH. When it is missing the test is
    skipped with the way to install it, or fails where TITANIC_REQUIRE_TOOLS=1."""
    candidate = REPO / ".venv-tools" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    reason = f"{name} not found: {INSTALLED_BY.get(name, f'install {name} on PATH')}"
    if os.environ.get(REQUIRE_TOOLS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_TOOLS}=1)")
    pytest.skip(reason)
