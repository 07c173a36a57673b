"""The container image and the compose stack.

The smoke test builds and runs the real image with podman (scripts/container-smoke). Compose cannot
run here (no Docker engine), so its file is checked for structure and for running the very commands
the image and the smoke test run.
"""

import json
import re
import shlex
import subprocess

import pytest
import yaml

from tests.support import REPO, tool_path
from tests.support.dockerfile import exec_form, healthcheck_command, instructions, stages

pytestmark = pytest.mark.infra

DOCKERFILE = REPO / "docker" / "Dockerfile"
SMOKE = REPO / "scripts" / "container-smoke"
MIGRATE = ["python", "manage.py", "migrate", "--noinput"]
LOADCSV = ["python", "manage.py", "loadcsv"]
SERVE = ["gunicorn", "--config", "titanic/gunicorn.conf.py", "titanic.wsgi"]


@pytest.fixture(scope="module")
def runtime():
    return stages(DOCKERFILE.read_text())[-1]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose_dev():
    return yaml.safe_load((REPO / "docker" / "compose.dev.yaml").read_text())


# --- the image, built and run for real -------------------------------------------------------------


@pytest.mark.e2e
def test_container_smoke():
    """Build with podman, migrate + loadcsv through the image, serve read-only as UID 10001, check over HTTP."""
    result = subprocess.run(
        [str(SMOKE)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20 * 60
    )
    print(result.stdout)
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


# --- compose ----------------------------------------------------------------------------------------


def test_compose_services_and_profiles(compose):
    assert set(compose["services"]) == {"db", "migrate", "loadcsv", "api", "pgadmin"}
    profiled = {name: service["profiles"] for name, service in compose["services"].items() if "profiles" in service}
    assert profiled == {"pgadmin": ["tools"]}
    assert compose["volumes"] == {"pgdata": None}


def test_compose_database_is_postgres_16_on_a_named_volume(compose):
    db = compose["services"]["db"]
    assert db["image"] == "postgres:16"
    assert db["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert db["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_compose_start_order(compose):
    services = compose["services"]
    conditions = {
        name: {dependency: spec["condition"] for dependency, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions == {
        "db": {},
        "migrate": {"db": "service_healthy"},
        "loadcsv": {"migrate": "service_completed_successfully"},
        "api": {"db": "service_healthy", "loadcsv": "service_completed_successfully"},
        "pgadmin": {"db": "service_healthy"},
    }


def test_compose_runs_the_commands_of_the_image_and_the_smoke_test(compose, runtime):
    services = compose["services"]
    assert services["migrate"]["command"] == MIGRATE
    assert services["loadcsv"]["command"] == LOADCSV
    (cmd,) = [args for name, args in runtime if name == "CMD"]
    assert services["api"]["command"] == exec_form(cmd) == SERVE
    smoke = SMOKE.read_text()
    assert f'"$IMAGE" {shlex.join(MIGRATE)} ||' in smoke
    assert f'"$IMAGE" {shlex.join(LOADCSV)} ||' in smoke
    # The smoke test's server runs the image's default command, as the api service does.
    assert re.search(r'podman run --detach .*\n.*"\$IMAGE" >/dev/null', smoke)


def test_compose_app_services_share_one_hardened_image(compose):
    for name in ("migrate", "loadcsv", "api"):
        service = compose["services"][name]
        assert service["image"] == "titanic-api:local"
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
        assert service["environment"]["DATABASE_URL"].endswith("@db:5432/titanic")
        assert service["env_file"] == [{"path": "compose.env"}, {"path": "../.env", "required": False}]


def test_compose_api_healthcheck_is_the_image_healthcheck(compose, runtime):
    api = compose["services"]["api"]
    assert api["healthcheck"]["test"] == ["CMD", *healthcheck_command(runtime)]
    assert api["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_configuration_is_local_and_documented(compose):
    defaults = dict(
        line.split("=", 1)
        for line in (REPO / "docker" / "compose.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert defaults["DJANGO_SECRET_KEY"].startswith("local-")
    # Plain HTTP on localhost, whatever .env says (.env.example carries the production defaults).
    fixed = compose["services"]["api"]["environment"]
    assert fixed["DJANGO_SECURE_SSL_REDIRECT"] == fixed["DJANGO_SESSION_COOKIE_SECURE"] == "0"
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert set(defaults) | set(fixed) <= documented


def test_compose_dev_override_mounts_the_source_and_reloads(compose, compose_dev):
    services = compose_dev["services"]
    assert set(services) <= set(compose["services"])
    api = services["api"]
    assert api["command"] == ["python", "manage.py", "runserver", "0.0.0.0:8000"]
    assert api["environment"] == {"DJANGO_DEBUG": "1"}
    for name in ("api", "migrate", "loadcsv"):
        assert services[name]["volumes"] == ["..:/app:ro"]
    # The smoke test runs this development mode too.
    smoke = SMOKE.read_text()
    assert '-e DJANGO_DEBUG=1 -v "$PWD:/app:ro" "$IMAGE" python manage.py runserver' in smoke
    servers = json.loads((REPO / "docker" / "pgadmin-servers.json").read_text())["Servers"]
    assert [server["Host"] for server in servers.values()] == ["db"]
