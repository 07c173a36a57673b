"""Helpers the tests and the benchmark share: real processes on loopback, PostgreSQL, small parsers.

- net: free ports and TcpProxy, a proxy in front of PostgreSQL that can refuse, cut or slow it.
- postgres: psql, throw-away databases loaded with the dataset, manage.py and API tokens.
- gunicorn: the service under gunicorn with the project's config, ready when start() returns.
- promql, dockerfile, hcl, kubernetes: the small parsers and schemas the infrastructure tests read
  their files with (tested in tests/test_support.py).
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


def tool_path(name: str) -> str:
    """A command from .venv-tools (make tools), else from PATH; fails the test when missing."""
    candidate = REPO / ".venv-tools" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make tools` / `make system-packages`")
    return found
