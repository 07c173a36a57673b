"""Release identity: GET / and the OpenAPI document report the version and commit the image was built
with (docker/Dockerfile turns its VERSION and REVISION build arguments into TITANIC_VERSION and
TITANIC_COMMIT), and a checkout reports the package version and an unknown commit."""

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.infra

SHA = "0123456789abcdef0123456789abcdef01234567"  # pragma: allowlist secret (a commit SHA)
PROBE = """
import json, django
django.setup()
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

welcome = Client().get("/", HTTP_ACCEPT="application/json").json()
info = SchemaGenerator().get_schema(request=None, public=True)["info"]
print(json.dumps({"welcome": welcome, "info": info}))
"""


def identity(**env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TITANIC_")}
    environ |= {"DJANGO_SETTINGS_MODULE": "titanic.settings", "DJANGO_DEBUG": "1", **env}
    environ["DATABASE_URL"] = "sqlite:///:memory:"
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=environ, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_build_time_identity_is_reported():
    found = identity(TITANIC_VERSION="2.3.4", TITANIC_COMMIT=SHA)
    assert (found["welcome"]["version"], found["welcome"]["commit"]) == ("2.3.4", SHA)
    assert (found["info"]["version"], found["info"]["x-commit"]) == ("2.3.4", SHA)


def test_a_checkout_reports_the_package_version_and_an_unknown_commit():
    from titanic import __version__

    found = identity()
    assert (found["welcome"]["version"], found["welcome"]["commit"]) == (__version__, "unknown")


@pytest.mark.parametrize(("arg", "env"), [("VERSION", "TITANIC_VERSION"), ("REVISION", "TITANIC_COMMIT")])
def test_the_dockerfile_bakes_the_build_arguments_in(arg, env):
    text = (REPO / "docker/Dockerfile").read_text()
    runtime = text.split("AS runtime", 1)[1]
    assert f"ARG {arg}=" in runtime and f"{env}=${{{arg}}}" in runtime


def test_the_version_is_set_in_titanic_and_quoted_alike_elsewhere():
    """titanic.__version__ is the version; pyproject.toml and the README's example of GET / repeat it."""
    from titanic import __version__

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == __version__
    assert re.findall(r'"version": "([^"]*)"', (REPO / "README.md").read_text()) == [__version__]
