"""docs/architecture.md lists the middleware in the order of settings.MIDDLEWARE, and every file it names exists."""

import re
from pathlib import Path

from django.conf import settings

DOC = Path(settings.BASE_DIR) / "docs" / "architecture.md"


def test_the_middleware_table_follows_settings_middleware():
    rows = re.findall(r"^\| `([\w.]+Middleware)` \|", DOC.read_text(), flags=re.MULTILINE)
    assert rows == settings.MIDDLEWARE


def test_every_file_named_exists():
    named = set(re.findall(r"\b(?:titanic|passengers)/[\w/]+\.py\b", DOC.read_text()))
    assert named
    assert [name for name in sorted(named) if not (Path(settings.BASE_DIR) / name).exists()] == []
