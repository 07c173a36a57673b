"""The service under a real gunicorn (3 workers) against a real PostgreSQL, as it runs in a pod.

The database is reached through a TCP proxy this test controls, so it can make the database
unreachable (or slow) without touching the PostgreSQL server other tests use.
"""

import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.example import person_body
from tests.harness.gunicorn import HTTPS, Gunicorn
from tests.harness.net import TcpProxy
from tests.harness.postgres import create_token, database_url, dataset_database, manage, scratch_name

pytestmark = pytest.mark.e2e

DATABASE = scratch_name("server")
WORKERS = 3


@pytest.fixture(scope="module")
def proxy():
    with dataset_database(DATABASE):
        proxy = TcpProxy().start()
        try:
            yield proxy
        finally:
            proxy.stop()


def serve(workdir, proxy, **env):
    """The service with WORKERS workers, its database through the proxy, HTTPS redirect on as in production."""
    return Gunicorn(
        workdir,
        database_url=database_url(DATABASE, proxy.port),
        workers=WORKERS,
        env={"DJANGO_SECURE_SSL_REDIRECT": "1", **env},
    )


@pytest.fixture(scope="module")
def server(proxy, tmp_path_factory):
    with serve(tmp_path_factory.mktemp("server"), proxy) as server:
        yield server


def scrape(server, metric, **labels):
    text = requests.get(server.url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_one_scrape_counts_the_requests_of_every_worker(server):
    people = requests.get(server.url + "/people", headers=HTTPS, timeout=10).json()
    before = scrape(server, "django_http_responses_total_by_status_view_method_total", view="people-detail")
    pids = set()
    requests_sent = 90
    for person in people[:requests_sent]:
        # a new connection each time, so the kernel spreads them over the workers
        response = requests.get(
            f"{server.url}/people/{person['uuid']}",
            headers={**HTTPS, "Connection": "close"},
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


@pytest.fixture(scope="module")
def write_token(proxy):
    return create_token(database_url(DATABASE), "freshness-writer", "add_passenger", "delete_passenger")


def test_a_write_is_seen_by_the_next_read_of_every_worker(server, write_token):
    """Every worker has the list (and later the passenger) cached when the write lands through one of
    them; reads on new connections then reach every worker, and none may answer from a stale cache."""
    auth = {"Authorization": f"Token {write_token}", "Content-Type": "application/json"}

    def listed(answers):
        assert {status for _, status, _ in answers} == {200}
        return [{person["uuid"] for person in json.loads(body)} for _, _, body in answers]

    assert len(server.workers()) == WORKERS
    server.get_from_every_worker("/people")
    status, created = server.request("POST", "/people", body=json.dumps(person_body()), headers=auth)
    assert status == 201
    uuid = json.loads(created)["uuid"]
    assert all(uuid in uuids for uuids in listed(server.get_from_every_worker("/people")))
    assert {status for _, status, _ in server.get_from_every_worker(f"/people/{uuid}")} == {200}

    assert server.request("DELETE", f"/people/{uuid}", headers=auth)[0] == 204
    assert all(uuid not in uuids for uuids in listed(server.get_from_every_worker("/people")))
    assert {status for _, status, _ in server.get_from_every_worker(f"/people/{uuid}")} == {404}


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
        headers={**HTTPS, "X-Request-ID": "trace-abc.123"},
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
    assert {r["logger"] for r in auth} >= {"titanic.api", "titanic.request"}
    assert any(r["logger"] == "gunicorn.error" for r in records)  # gunicorn's own lines share the format


def test_sigterm_lets_a_slow_request_finish_within_the_graceful_timeout(proxy, tmp_path):
    server = serve(tmp_path, proxy, GUNICORN_GRACEFUL_TIMEOUT="10", GUNICORN_WORKERS="1").start()
    result = {}

    def slow_request():
        result["response"] = requests.get(server.url + "/people/stats", headers=HTTPS, timeout=30)

    try:
        with proxy.slowed(0.5):  # each message to PostgreSQL now takes half a second
            request = threading.Thread(target=slow_request)
            request.start()
            time.sleep(0.8)
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            request.join(timeout=20)
            server.process.wait(timeout=15)
            stopped_after = time.monotonic() - stopping
    finally:
        server.stop()
    assert result["response"].status_code == 200
    assert result["response"].json()["total"] == 887
    assert stopped_after < 10 + 2
    assert server.process.returncode == 0


def test_the_admin_login_locks_out_logs_and_unlocks(proxy, tmp_path):
    """django-axes under gunicorn (3 workers sharing the attempts in PostgreSQL) behind a pretend ALB."""
    url = database_url(DATABASE, proxy.port)
    username, password = "axes-admin", "a-long-test-password"  # pragma: allowlist secret
    manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        f"User.objects.create_superuser({username!r}, password={password!r})",
        url=url,
    )
    insecure_cookies = {"DJANGO_CSRF_COOKIE_SECURE": "0", "DJANGO_SESSION_COOKIE_SECURE": "0"}
    with serve(tmp_path, proxy, DJANGO_AXES_ENABLED="1", TITANIC_TRUSTED_PROXIES="1", **insecure_cookies) as server:
        https = {**HTTPS, "Origin": f"https://127.0.0.1:{server.port}"}

        def log_in(secret, client="198.51.100.23"):
            session = requests.Session()
            headers = {**https, "X-Forwarded-For": client}
            session.get(server.url + "/admin/login/", headers=headers, timeout=5)
            form = {"username": username, "password": secret, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
            return session.post(
                server.url + "/admin/login/?next=/admin/", data=form, headers=headers, allow_redirects=False, timeout=5
            ).status_code

        assert [log_in("wrong") for _ in range(5)] == [200, 200, 200, 200, 429]
        assert log_in(password) == 429
        assert log_in(password, client="203.0.113.50") == 429  # locked by name, from anywhere
        # Tokens are not passwords: a locked-out user's token still writes.
        key = manage("drf_create_token", username, url=url).splitlines()[-1].split()[2]
        token = {**https, "Authorization": f"Token {key}"}
        created = requests.post(server.url + "/people", json=person_body(name="Axes"), headers=token, timeout=5)
        assert created.status_code == 201, created.text
        deleted = requests.delete(f"{server.url}/people/{created.json()['uuid']}", headers=token, timeout=5)
        assert deleted.status_code == 204
        manage("axes_reset_username", username, url=url)
        assert log_in(password) == 302
        time.sleep(0.5)
        records = [json.loads(line) for line in server.log_lines()]
    failed = f"login failed for {username}"
    failures = [r for r in records if r["logger"] == "titanic.api" and r["message"] == failed]
    assert len(failures) == 7  # five wrong passwords and two refused right ones, each logged as before
    statuses = [
        r["status"]
        for r in records
        if r["logger"] == "titanic.request" and r["path"] == "/admin/login/" and r["method"] == "POST"
    ]
    assert statuses == [200, 200, 200, 200, 429, 429, 429, 302]
