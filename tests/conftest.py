import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def tool_path(name):
    """A command from .venv-tools (make tools), else from PATH; fails the test when missing."""
    candidate = REPO / ".venv-tools" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make tools` / `make system-packages`")
    return found
