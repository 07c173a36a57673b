"""Probes, request ids, logging, settings and the gunicorn config, in-process (see tests/test_server.py
for the same under a real gunicorn)."""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import pytest
from django.utils.module_loading import import_string

from titanic.logging import RequestIdFilter, logging_config, request_id_var

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.django_db
def test_health_and_ready(client):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "checks": {}}
    ready = client.get("/ready", HTTP_ACCEPT="text/html")  # JSON whatever the client asks for
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"Migrations": "ok"}}


@pytest.mark.django_db
def test_health_answers_with_the_headers_of_ready_and_only_to_safe_methods(client):
    health, ready = client.get("/health"), client.get("/ready")
    for header in ["Content-Type", "Cache-Control", "Vary", "Expires"]:
        assert health.has_header(header), header
        assert health[header] == ready[header] or header == "Expires", header
    assert client.head("/health").status_code == 200
    assert client.post("/health").status_code == 405


@pytest.fixture
def unproven_pod():
    """The pod's readiness as at its start: not yet seen its database at the latest migration."""
    from titanic.probes import PASSED

    before, PASSED[0] = PASSED[0], 0
    yield
    PASSED[0] = before


@pytest.mark.django_db
def test_ready_is_503_while_migrations_are_pending_then_kept_once_passed(client, monkeypatch, unproven_pod):
    from django.db.migrations.executor import MigrationExecutor

    plan = MigrationExecutor.migration_plan
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("migration", False)])
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["Migrations"] == "Unavailable: 1 migration(s) not applied"
    assert client.get("/health").status_code == 200

    monkeypatch.setattr(MigrationExecutor, "migration_plan", plan)
    assert client.get("/ready").status_code == 200
    # Passed once: later database trouble is not this pod's fault (tests/test_faults.py, real outage).
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: 1 / 0)
    assert client.get("/ready").status_code == 200


@pytest.mark.django_db
def test_probes_skip_host_validation(client):
    assert client.get("/health", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/ready", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/", HTTP_HOST="10.0.0.7:8000").status_code == 400


@pytest.mark.django_db
def test_request_id_is_echoed_when_well_formed_and_generated_otherwise(client):
    assert client.get("/health", HTTP_X_REQUEST_ID="abc-123_x.y:z")["X-Request-ID"] == "abc-123_x.y:z"
    for bad in ["has space", "x" * 129, "<script>", ""]:
        generated = client.get("/health", HTTP_X_REQUEST_ID=bad)["X-Request-ID"]
        assert generated != bad
        assert len(generated) == 32


@pytest.mark.django_db
def test_one_log_line_per_request_with_its_fields(client, caplog):
    with caplog.at_level(logging.INFO, logger="titanic.request"):
        client.get("/people?sex=female", HTTP_X_REQUEST_ID="req-42")
    (record,) = [r for r in caplog.records if r.name == "titanic.request"]
    assert (record.method, record.path, record.status) == ("GET", "/people", 200)
    assert record.duration_ms >= 0
    assert record.user is None
    assert record.client == "127.0.0.1"


def test_json_formatter_writes_one_object_per_line_with_the_request_id():
    spec = logging_config("json")["formatters"]["json"]
    formatter = import_string(spec["()"])(spec["fmt"], rename_fields=spec["rename_fields"], timestamp=spec["timestamp"])
    record = logging.LogRecord("titanic.request", logging.INFO, __file__, 1, "GET / 200", None, None)
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["request_id"] == "rid-1"
    assert data["level"] == "INFO" and data["logger"] == "titanic.request" and data["message"] == "GET / 200"


def _load_gunicorn_config(monkeypatch, tmp_path, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    spec = importlib.util.spec_from_file_location("gunicorn_conf", os.path.join(REPO, "titanic", "gunicorn.conf.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_wipes_the_metrics_dir_at_start_and_marks_dead_workers(monkeypatch, tmp_path):
    config = _load_gunicorn_config(monkeypatch, tmp_path)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"stale")
    (metrics / "gauge_livesum_4242.db").write_bytes(b"")
    config.on_starting(server=None)
    assert list(metrics.iterdir()) == []

    (metrics / "gauge_livesum_4242.db").write_bytes(b"")

    class Worker:
        pid = 4242

    config.child_exit(server=None, worker=Worker())
    assert not (metrics / "gauge_livesum_4242.db").exists()


def _run_django(*args, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TITANIC_"))}
    environment.update(env)
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)


PRODUCTION = {
    "DJANGO_SECRET_KEY": "a-long-random-production-like-secret-key-0123456789-abcdefghijklmnop",
    "DJANGO_ALLOWED_HOSTS": "titanic.example.com",
    "DATABASE_URL": "sqlite:////tmp/check-deploy.sqlite3",
}


def test_check_deploy_is_clean_in_production():
    result = _run_django("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _run_django("check", DJANGO_ALLOWED_HOSTS="x")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_anonymous_writes_warning_is_logged_at_startup():
    result = _run_django("check", **PRODUCTION, TITANIC_ANONYMOUS_WRITES="1", LOG_FORMAT="json")
    assert result.returncode == 0
    warning = next(json.loads(line) for line in result.stdout.splitlines() if "TITANIC_ANONYMOUS_WRITES" in line)
    assert warning["level"] == "WARNING"


def test_env_example_documents_every_variable_the_app_reads():
    import re
    from pathlib import Path

    root = Path(REPO)
    read = set(re.findall(r'env(?:\.\w+)?\("([A-Z_]+)"', (root / "titanic/settings.py").read_text()))
    gunicorn_conf = (root / "titanic/gunicorn.conf.py").read_text()
    read |= set(re.findall(r'(?:environ\.get|setdefault)\("([A-Z_]+)"', gunicorn_conf))
    documented = set(re.findall(r"^([A-Z_]+)=", (root / ".env.example").read_text(), re.MULTILINE))
    assert read
    assert read == documented


@pytest.fixture
def own_connection(db):
    """A second connection to the test database, outside the test's transaction."""
    from django.db import connections

    own = connections.create_connection("default")
    if own.vendor != "postgresql":
        pytest.skip("the health check is PostgreSQL's")
    yield own
    own.close()


def _backend_pid(wrapper):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_health_check_skips_the_round_trip_while_the_server_is_silent(own_connection, monkeypatch):
    checks = []
    usable = type(own_connection).is_usable

    def counted(self):
        checks.append(self)
        return usable(self)

    monkeypatch.setattr(type(own_connection), "is_usable", counted)
    first = _backend_pid(own_connection)
    own_connection.close_if_unusable_or_obsolete()  # what Django does as each request starts
    assert _backend_pid(own_connection) == first
    assert checks == []


def test_health_check_reconnects_after_the_server_closed_the_connection(own_connection):
    import select

    from django.db import connection

    first = _backend_pid(own_connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    assert select.select([own_connection.connection.fileno()], [], [], 5)[0]  # the server's goodbye arrived
    own_connection.close_if_unusable_or_obsolete()
    assert _backend_pid(own_connection) != first  # the next query works, on a new connection


def test_health_check_works_with_a_socket_numbered_above_1024(own_connection):
    """A busy gthread worker holds many client connections, so a new database socket can get a high
    file descriptor number, which select() refuses (FD_SETSIZE)."""
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        first = _backend_pid(own_connection)  # connects now, above the spare descriptors
        assert own_connection.connection.fileno() > 1024
        own_connection.close_if_unusable_or_obsolete()
        assert _backend_pid(own_connection) == first
    finally:
        for descriptor in spare:
            os.close(descriptor)


def _prepared_statements(wrapper):
    """{statement: times executed} of the statements prepared on this connection's server session."""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def test_prepared_cursor_parses_and_plans_once_per_connection(own_connection):
    from django_prometheus.db import execute_total

    stamp = "SELECT stamp FROM passengers_datasetversion WHERE id = 1"
    counted = execute_total.labels("default", "postgresql")
    _backend_pid(own_connection)  # connected, and the connection set up
    before = counted._value.get()
    for _ in range(3):
        with own_connection.prepared_cursor() as cursor:
            cursor.execute(stamp)
            assert cursor.fetchone()
    assert counted._value.get() == before + 3  # still counted in /metrics
    assert _prepared_statements(own_connection) == {stamp: 3}  # Django's own cursor prepared nothing
    own_connection.close()
    with own_connection.prepared_cursor() as cursor:  # a new connection prepares it again
        cursor.execute(stamp)
    assert _prepared_statements(own_connection) == {stamp: 1}
