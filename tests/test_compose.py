"""docker/compose.yaml, run for real by scripts/compose-smoke (make compose-smoke; the compose CI job).

Here (no Docker engine, no registry) it runs with podman and podman-compose. The images compose
cannot pull are built locally first by scripts/base-images: the app's base from Debian packages
with debootstrap, as scripts/container-smoke does, and a stand-in for postgres:16 that runs
Debian bookworm's PostgreSQL 15 behind the official image's environment variables (Debian 12 has
no PostgreSQL 16); the CI job runs the same script with Docker and the real postgres:16. Then: the
stack up in the order of its depends_on conditions, the one-shot migrate and loadcsv services
exiting 0, the contract suite against the API, a passenger that survives a restart of the api
service and a recreation of the stack, and nothing left behind.

The rest of this file checks what the files must agree on: the services run the image's own
commands and HEALTHCHECK, the podman run follows the depends_on conditions, the settings are in
.env.example, and the development override is the one the container smoke test runs.
"""

import json
import re
import shlex
import subprocess

import pytest
import yaml

from tests.harness import REPO, tool_path
from tests.infra_readers.dockerfile import exec_form, healthcheck_command, stages

pytestmark = pytest.mark.infra

SCRIPT = REPO / "scripts" / "compose-smoke"
CONTAINER_SMOKE = REPO / "scripts" / "container-smoke"
STANDIN = REPO / "docker" / "standin-postgres"
MIGRATE = ["python", "manage.py", "migrate", "--noinput"]
LOADCSV = ["python", "manage.py", "loadcsv"]
SERVE = ["gunicorn", "--config", "titanic/gunicorn.conf.py", "titanic.wsgi"]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose_dev():
    return yaml.safe_load((REPO / "docker" / "compose.dev.yaml").read_text())


@pytest.fixture(scope="module")
def runtime():
    return stages((REPO / "docker" / "Dockerfile").read_text())[-1]


def default(value):
    """What compose makes of `${VARIABLE:-default}` when VARIABLE is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def projects_left():
    listed = subprocess.run(
        ["podman", "ps", "-a", "--format", '{{index .Labels "com.docker.compose.project"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    volumes = subprocess.run(["podman", "volume", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    return {name for name in listed + volumes.split() if name.startswith("titanic-smoke-")}


# --- the stack, run ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_compose_smoke():
    tool_path("podman")
    before = projects_left()
    result = subprocess.run(
        [str(SCRIPT)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30 * 60,
    )
    assert result.returncode == 0, result.stdout[-8000:]
    for line in (
        "db: healthy after",
        "migrate: exited 0",
        "loadcsv: exited 0 after",
        "887 rows, 887 created",
        "api: healthy after",
        "contract: passed against http://127.0.0.1:",
        "ok   after a restart of the api service: the passenger created before is unchanged; 888 passengers",
        "ok   after down and up (migrate and loadcsv ran again): the passenger created before is unchanged",
        "887 rows, 0 created, 0 updated, 887 unchanged",
        "ok   the api runs read-only",
        "compose smoke test passed",
    ):
        assert line in result.stdout, line
    assert projects_left() == before, "containers or volumes of the run are left"


def test_the_standin_postgres_image_lints_clean_and_takes_the_official_variables(compose):
    result = subprocess.run(
        [tool_path("hadolint"), str(STANDIN / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    entrypoint = (STANDIN / "entrypoint.sh").read_text()
    for variable in compose["services"]["db"]["environment"]:
        assert f"${{{variable}" in entrypoint, variable


# --- the file ---------------------------------------------------------------------------------------


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
    # Under podman the smoke test follows these conditions itself, in this order.
    assert "for service in migrate loadcsv api; do" in SCRIPT.read_text()


def test_compose_runs_the_commands_of_the_image_and_the_container_smoke_test(compose, runtime):
    services = compose["services"]
    assert services["migrate"]["command"] == MIGRATE
    assert services["loadcsv"]["command"] == LOADCSV
    (cmd,) = [args for name, args in runtime if name == "CMD"]
    assert services["api"]["command"] == exec_form(cmd) == SERVE
    smoke = CONTAINER_SMOKE.read_text()
    assert f'"$IMAGE" {shlex.join(MIGRATE)} ||' in smoke
    assert f'"$IMAGE" {shlex.join(LOADCSV)} ||' in smoke


def test_compose_api_healthcheck_is_the_image_healthcheck(compose, runtime):
    api = compose["services"]["api"]
    assert api["healthcheck"]["test"] == ["CMD", *healthcheck_command(runtime)]
    assert [default(port) for port in api["ports"]] == ["127.0.0.1:8000:8000"]


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
    # The container smoke test runs this development mode.
    smoke = CONTAINER_SMOKE.read_text()
    assert '-e DJANGO_DEBUG=1 -v "$PWD:/app:ro" "$IMAGE" python manage.py runserver' in smoke
    servers = json.loads((REPO / "docker" / "pgadmin-servers.json").read_text())["Servers"]
    assert [server["Host"] for server in servers.values()] == ["db"]


def test_the_compose_ci_job_runs_the_same_script_with_docker():
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step["run"] for step in ci["jobs"]["compose"]["steps"] if "run" in step]
    assert runs == ["make compose-smoke COMPOSE_ENGINE=docker"]
    dry_run = ["make", "-n", "compose-smoke", "COMPOSE_ENGINE=docker"]
    planned = subprocess.run(dry_run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "scripts/compose-smoke" in planned
    assert "install-system-packages" not in planned, "Docker needs none of the podman packages"
