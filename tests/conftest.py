# tests/support holds what the tests share; these names stay importable from here until the last
# test modules import them from there.
from tests.support import REPO, tool_path

__all__ = ["REPO", "tool_path"]
