"""The service under a real gunicorn (3 workers) against a real PostgreSQL, as it runs in a pod.

The database is reached through a TCP proxy this test controls, so it can make the database
unreachable (or slow) without touching the PostgreSQL server other tests use.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO

DATABASE = "titanic_server_test"
WORKERS = 3


class TcpProxy:
    """Forwards a loopback port to PostgreSQL; can refuse connections or delay traffic."""

    def __init__(self, target=("127.0.0.1", 5432)):
        self.target = target
        self.delay = 0.0
        self.connections = []
        self.listener = None
        self.port = free_port()

    def start(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        """Close the listener and cut every open connection: the database 'goes away'."""
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.connections.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.connections += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source, sink, delayed):
        try:
            while data := source.recv(65536):
                if delayed and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True, capture_output=True)


class Server:
    def __init__(self, tmp_path, proxy, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE}",
            "DJANGO_SECRET_KEY": "server-test-key",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "1",
            "LOG_FORMAT": "json",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(WORKERS),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{self.port}"),
            **env,
        }
        self.process = None

    def start(self):
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "titanic/gunicorn.conf.py", "titanic.wsgi"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=3).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not start:\n" + self.log_path.read_text())

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=40)

    def log_lines(self):
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


def manage(*args, proxy):
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE}",
           "DJANGO_SECRET_KEY": "server-test-key"}  # fmt: skip
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def proxy():
    proxy = TcpProxy()
    proxy.start()
    psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    psql(f"CREATE DATABASE {DATABASE}")
    manage("migrate", "--noinput", proxy=proxy)
    manage("loadcsv", proxy=proxy)
    yield proxy
    proxy.stop()
    psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


@pytest.fixture(scope="module")
def server(proxy, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), proxy).start()
    yield server
    server.stop()


def scrape(server, metric, **labels):
    text = requests.get(server.url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_one_scrape_counts_the_requests_of_every_worker(server):
    people = requests.get(server.url + "/people", headers={"X-Forwarded-Proto": "https"}, timeout=10).json()
    before = scrape(server, "django_http_responses_total_by_status_view_method_total", view="people-detail")
    pids = set()
    requests_sent = 90
    for person in people[:requests_sent]:
        # a new connection each time, so the kernel spreads them over the workers
        response = requests.get(
            f"{server.url}/people/{person['uuid']}",
            headers={"X-Forwarded-Proto": "https", "Connection": "close"},
            timeout=10,
        )
        assert response.status_code == 200
    after = scrape(server, "django_http_responses_total_by_status_view_method_total", view="people-detail")
    assert after - before == requests_sent
    metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    pids = {m.group(1) for f in metrics_dir.iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}
    assert len(pids) >= 2, "requests were served by one worker only; the test proves nothing"
    latency = scrape(server, "django_http_requests_latency_seconds_by_view_method_count", view="people-detail")
    assert latency >= requests_sent
    assert scrape(server, "django_db_execute_total") > 0


def test_ready_follows_the_database_while_health_does_not(server, proxy):
    assert requests.get(server.url + "/ready", timeout=5).status_code == 200
    proxy.stop()
    try:
        started = time.monotonic()
        response = requests.get(server.url + "/ready", timeout=5)
        assert response.status_code == 503
        assert time.monotonic() - started < 2
        assert response.json()["status"] == "unavailable"
        assert response.json()["checks"]["Database"] != "ok", response.json()
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
        # the API itself fails cleanly too, and the server survives it
        assert (
            requests.get(server.url + "/people/stats", headers={"X-Forwarded-Proto": "https"}, timeout=5).status_code
            == 503
        )
    finally:
        proxy.start()
    assert requests.get(server.url + "/ready", timeout=5).status_code == 200
    assert requests.get(server.url + "/people", headers={"X-Forwarded-Proto": "https"}, timeout=5).status_code == 200


def test_probes_and_metrics_answer_the_pod_ip_over_plain_http(server):
    pod = {"Host": "10.0.3.17:8000"}
    for path in ["/health", "/ready", "/metrics"]:
        response = requests.get(server.url + path, headers=pod, timeout=5, allow_redirects=False)
        assert response.status_code == 200, path
    # everything else keeps host validation and the HTTPS redirect
    assert requests.get(server.url + "/people", headers=pod, timeout=5, allow_redirects=False).status_code == 400
    assert requests.get(server.url + "/people", timeout=5, allow_redirects=False).status_code == 301


def test_every_log_line_is_json_and_carries_the_request_id(server):
    tagged = requests.get(
        server.url + "/people?sex=female",
        headers={"X-Request-ID": "trace-abc.123", "X-Forwarded-Proto": "https"},
        timeout=5,
    )
    assert tagged.headers["X-Request-ID"] == "trace-abc.123"
    invalid = requests.get(server.url + "/health", headers={"X-Request-ID": "bad id\twith spaces"}, timeout=5)
    generated = invalid.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    failed_login = requests.post(
        server.url + "/people", json={}, headers={"Authorization": "Token wrong", "X-Request-ID": "auth-fail-1",
                                                  "X-Forwarded-Proto": "https"}, timeout=5)  # fmt: skip
    assert failed_login.status_code == 401
    time.sleep(0.5)
    records = [json.loads(line) for line in server.log_lines()]  # raises if any line is not JSON
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    request_line = next(r for r in records if r["request_id"] == "trace-abc.123" and r["logger"] == "titanic.request")
    assert request_line["method"] == "GET"
    assert request_line["path"] == "/people"
    assert request_line["status"] == 200
    assert request_line["duration_ms"] > 0
    assert request_line["client"] == "127.0.0.1"
    assert "user" in request_line
    assert any(r["request_id"] == generated for r in records)
    auth = [r for r in records if r["request_id"] == "auth-fail-1"]
    assert {r["logger"] for r in auth} >= {"passengers.api", "titanic.request"}
    assert any(r["logger"] == "gunicorn.error" for r in records)  # gunicorn's own lines share the format


def test_sigterm_lets_a_slow_request_finish_within_the_graceful_timeout(proxy, tmp_path):
    server = Server(tmp_path, proxy, GUNICORN_GRACEFUL_TIMEOUT="10", GUNICORN_WORKERS="1").start()
    try:
        result = {}

        def slow_request():
            result["response"] = requests.get(
                server.url + "/people/stats", headers={"X-Forwarded-Proto": "https"}, timeout=30
            )

        proxy.delay = 0.5  # each message to PostgreSQL now takes half a second
        request = threading.Thread(target=slow_request)
        request.start()
        time.sleep(0.8)
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        request.join(timeout=20)
        server.process.wait(timeout=15)
        stopped_after = time.monotonic() - stopping
    finally:
        proxy.delay = 0.0
        server.stop()
    assert result["response"].status_code == 200
    assert result["response"].json()["total"] == 887
    assert stopped_after < 10 + 2
    assert server.process.returncode == 0


def test_the_admin_login_locks_out_logs_and_unlocks(proxy, tmp_path):
    """django-axes under gunicorn (3 workers sharing the attempts in PostgreSQL) behind a pretend ALB."""
    username, password = "axes-admin", "a-long-test-password"  # pragma: allowlist secret
    manage("shell", "-c", f"from django.contrib.auth.models import User; "
           f"User.objects.create_superuser({username!r}, password={password!r})", proxy=proxy)  # fmt: skip
    server = Server(tmp_path, proxy, DJANGO_AXES_ENABLED="1", TITANIC_TRUSTED_PROXIES="1",
                    DJANGO_CSRF_COOKIE_SECURE="0", DJANGO_SESSION_COOKIE_SECURE="0").start()  # fmt: skip
    https = {"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{server.port}"}

    def log_in(secret, client="198.51.100.23"):
        session = requests.Session()
        headers = {**https, "X-Forwarded-For": client}
        session.get(server.url + "/admin/login/", headers=headers, timeout=5)
        form = {"username": username, "password": secret, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
        response = session.post(server.url + "/admin/login/?next=/admin/", data=form, headers=headers,
                                allow_redirects=False, timeout=5)  # fmt: skip
        return response.status_code

    try:
        assert [log_in("wrong") for _ in range(5)] == [200, 200, 200, 200, 429]
        assert log_in(password) == 429
        assert log_in(password, client="203.0.113.50") == 429  # locked by name, from anywhere
        # Tokens are not passwords: a locked-out user's token still writes.
        key = manage("drf_create_token", username, proxy=proxy).stdout.decode().split()[2]
        token = {**https, "Authorization": f"Token {key}"}
        created = requests.post(server.url + "/people", json={"survived": True, "passengerClass": 1, "name": "Axes",
                                "sex": "other", "age": 30, "siblingsOrSpousesAboard": 0, "parentsOrChildrenAboard": 0,
                                "fare": 1.0}, headers=token, timeout=5)  # fmt: skip
        assert created.status_code == 201, created.text
        deleted = requests.delete(f"{server.url}/people/{created.json()['uuid']}", headers=token, timeout=5)
        assert deleted.status_code == 204
        manage("axes_reset_username", username, proxy=proxy)
        assert log_in(password) == 302
        time.sleep(0.5)
        records = [json.loads(line) for line in server.log_lines()]
    finally:
        server.stop()
    failed = f"login failed for {username}"
    failures = [r for r in records if r["logger"] == "passengers.api" and r["message"] == failed]
    assert len(failures) == 7  # five wrong passwords and two refused right ones, each logged as before
    statuses = [r["status"] for r in records if r["logger"] == "titanic.request" and r["path"] == "/admin/login/"
                and r["method"] == "POST"]  # fmt: skip
    assert statuses == [200, 200, 200, 200, 429, 429, 429, 302]
