"""Hostile clients against gunicorn with the production settings and several workers.

Each defect found so far, and several members of its class: the lockout a successful login
cleared, metric labels from client input, over-long usernames, forwarding headers gunicorn trusted,
malformed bodies, malformed forwarded addresses; then the read throttle (measured) and text logs.
The server runs behind a pretend ALB (TITANIC_TRUSTED_PROXIES=1), so each test is its own client
by the X-Forwarded-For address it sends. docs/security.md says what is refused and why.
"""

import json
import re
import statistics
import time

import pytest
import requests

from tests.harness.gunicorn import HTTPS, Gunicorn
from tests.harness.postgres import create_token, database_url, dataset_database, manage, scratch_name

pytestmark = pytest.mark.e2e

DATABASE = scratch_name("security")
WORKERS = 3
PASSWORD = "a-long-test-password"  # pragma: allowlist secret
PRODUCTION = {
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_AXES_ENABLED": "1",
    "TITANIC_TRUSTED_PROXIES": "1",
    # Plain HTTP on loopback: the cookies must travel without TLS for the login forms.
    "DJANGO_CSRF_COOKIE_SECURE": "0",
    "DJANGO_SESSION_COOKIE_SECURE": "0",
}


@pytest.fixture(scope="module")
def url():
    with dataset_database(DATABASE) as url:
        script = (
            "from django.contrib.auth.models import User;"
            f"User.objects.create_superuser('sec-admin', password={PASSWORD!r});"
            f"User.objects.create_user('sec-nobody', password={PASSWORD!r})"
        )
        manage("shell", "-c", script, url=url)
        yield url


@pytest.fixture(scope="module")
def server(url, tmp_path_factory):
    with Gunicorn(tmp_path_factory.mktemp("security"), database_url=url, workers=WORKERS, env=PRODUCTION) as server:
        yield server


@pytest.fixture(scope="module")
def token(url):
    return create_token(database_url(DATABASE), "sec-writer", "add_passenger", "change_passenger")


def as_client(address, **headers):
    return {**HTTPS, "X-Forwarded-For": address, **headers}


def log_in(server, username, password, address, path="/admin/login/"):
    """The login form as a browser posts it (CSRF cookie and token); the status code."""
    session = requests.Session()
    headers = as_client(address, Origin=f"https://127.0.0.1:{server.port}")
    session.get(server.url + path, headers=headers, timeout=10)
    form = {"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
    return session.post(server.url + path, data=form, headers=headers, allow_redirects=False, timeout=10).status_code


def records(server):
    """The server's JSON log records (split on newlines only: a record may hold U+2028, which
    str.splitlines() would also split on)."""
    time.sleep(0.5)
    return [json.loads(line) for line in server.log_path.read_text().split("\n") if line.startswith("{")]


def server_errors(server):
    return [r for r in records(server) if r.get("status", 0) >= 500 or r["message"].startswith("Internal Server Error")]


@pytest.fixture(autouse=True)
def no_lockout(url):
    """Each test starts with no failure counted, whatever the one before left."""
    manage("axes_reset", url=url)


# --- 1: a successful login clears only its own username's failures --------------------------------


def test_a_login_as_a_user_without_permissions_gives_no_fresh_guesses(server):
    address = "198.51.100.1"
    guesses = []
    for _ in range(3):  # the attack: four guesses, a login as anyone, again and again
        guesses += [log_in(server, "sec-admin", "wrong", address) for _ in range(4)]
        if log_in(server, "sec-nobody", PASSWORD, address, path="/api-auth/login/") != 302:
            break
    assert guesses[:5] == [200, 200, 200, 200, 429]
    assert log_in(server, "sec-admin", PASSWORD, "203.0.113.99") == 429  # the name is locked from anywhere
    assert log_in(server, "sec-nobody", PASSWORD, address, path="/api-auth/login/") == 429  # so is the address


# --- 2: no label value from client input --------------------------------------------------------


def series(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def method_name(i):
    return "Q" + "".join(chr(ord("A") + (i // 26**k) % 26) for k in range(3))


def send_many(server, requests_to_send, connections=6):
    """Raw requests over a few keep-alive connections (the kernel spreads them over the workers)."""
    pool = [server.connect() for _ in range(connections)]
    statuses = set()
    try:
        for i, (method, path, headers) in enumerate(requests_to_send):
            connection = pool[i % connections]
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.add(response.status)
    finally:
        for connection in pool:
            connection.close()
    return statuses


def test_thousands_of_methods_paths_and_hosts_add_no_series(server):
    kinds = {
        "method": lambda i: (method_name(i), "/people", HTTPS),
        "path": lambda i: ("GET", f"/no-such-page-{i}", HTTPS),
        "passenger path": lambda i: ("GET", f"/people/not-a-uuid-{i}", HTTPS),
        "host": lambda i: ("GET", "/people", {**HTTPS, "Host": f"h{i}.example.com"}),
    }
    for request in kinds.values():
        send_many(server, [request(0)], connections=1)
    before = series(server)
    for kind, request in kinds.items():
        statuses = send_many(server, [request(i) for i in range(1, 1001)])
        assert statuses <= {400, 404, 405}, kind
    assert series(server) == before
    assert not server_errors(server)


# --- 3: over-long usernames ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_an_over_long_username_is_a_400_and_counts_towards_the_address(server, path):
    address = "198.51.100.3"
    statuses = [log_in(server, "x" * length, "guess", address, path=path) for length in (151, 300, 5000, 20000)]
    assert statuses == [400, 400, 400, 400]
    assert log_in(server, "y" * 151, "guess", address, path=path) == 429  # the fifth failure
    assert log_in(server, "sec-nobody", PASSWORD, address, path="/api-auth/login/") == 429
    assert not server_errors(server)


# --- 4: forwarding headers ----------------------------------------------------------------------


SCHEME_HEADERS = [
    {"X-Forwarded-Ssl": "on"},
    {"X-Forwarded-Protocol": "ssl"},
    {"Forwarded": "proto=https"},
    {"X-Forwarded-Scheme": "https"},
    {"X-Url-Scheme": "https"},
]


@pytest.mark.parametrize("header", SCHEME_HEADERS, ids=[next(iter(h)) for h in SCHEME_HEADERS])
def test_no_header_but_x_forwarded_proto_makes_a_plain_request_secure(server, header):
    """From 127.0.0.1, which gunicorn trusted by default: the answer was a 200, kept by the cache and
    then given to every plain-HTTP request of the same URL instead of the redirect to HTTPS."""
    plain: dict[str, str] = {}
    for headers in (header, plain):  # each on new connections, until every worker has answered
        workers, statuses = set(), set()
        for _ in range(64):
            connection = server.connect()
            connection.request("GET", "/people/stats", headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.add(response.status)
            workers.add(server.worker_serving(connection))
            connection.close()
            if workers >= set(server.workers()):
                break
        assert (statuses, workers) == ({301}, set(server.workers()))


def test_a_script_name_header_prefixes_no_link(server):
    evil = {**HTTPS, "SCRIPT_NAME": "/evil", "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "666"}
    for _, status, body in server.get_from_every_worker("/people?limit=1", headers=evil):
        assert status == 200
        assert json.loads(body)["next"] == f"https://127.0.0.1:{server.port}/people?limit=1&offset=1"
    assert {status for _, status, _ in server.get_from_every_worker("/evil/people", headers=evil)} == {404}
    for _, _, body in server.get_from_every_worker("/people?limit=1"):  # and nothing was kept for the others
        assert json.loads(body)["next"] == f"https://127.0.0.1:{server.port}/people?limit=1&offset=1"


def test_answers_to_a_token_are_private(server, token):
    auth = {**HTTPS, "Authorization": f"Token {token}"}
    for _ in range(2):  # rendered, then from the cache
        response = requests.get(server.url + "/people/stats", headers=auth, timeout=10)
        assert (response.status_code, response.headers["Cache-Control"]) == (200, "private")
    assert "Cache-Control" not in requests.get(server.url + "/people/stats", headers=HTTPS, timeout=10).headers


# --- 5: malformed bodies ------------------------------------------------------------------------


MALFORMED = {
    "1000 nested arrays": (b"[" * 1000 + b"]" * 1000, "application/json"),
    "30000 nested arrays": (b"[" * 30000 + b"]" * 30000, "application/json"),
    "1000 nested objects": (b'{"a":' * 1000 + b"1" + b"}" * 1000, "application/json"),
    "JSON as rot13": (b'{"name": "a"}', "application/json; charset=rot13"),
    "form as base64": (b"name=a", "application/x-www-form-urlencoded; charset=base64"),
    "form as punycode": (b"name=a\xff", "application/x-www-form-urlencoded; charset=punycode"),
    "multipart as idna": (
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\na\xff\r\n--b--\r\n',
        "multipart/form-data; boundary=b; charset=idna",
    ),
    "multipart as zlib": (
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\na\r\n--b--\r\n',
        "multipart/form-data; boundary=b; charset=zlib",
    ),
    "multipart without boundary": (b"--x\r\n", "multipart/form-data"),
    "lone surrogate": (b'{"name": "\\ud800"}', "application/json"),
}


def test_every_malformed_body_is_a_4xx_and_changes_nothing(server, token):
    auth = {**HTTPS, "Authorization": f"Token {token}"}
    count = len(requests.get(server.url + "/people", headers=HTTPS, timeout=10).json())
    for name, (body, content_type) in MALFORMED.items():
        for path in ["/people", "/admin/login/", "/api-auth/login/"]:
            headers = {**auth, "Content-Type": content_type, "X-Forwarded-For": "198.51.100.5"}
            status, _ = server.request("POST", path, body=body, headers=headers, check=False)
            assert status < 500, (name, path)
            if path == "/people":
                assert 400 <= status < 500, name
    assert len(requests.get(server.url + "/people", headers=HTTPS, timeout=10).json()) == count
    assert not server_errors(server)


# --- 6: malformed forwarded addresses -----------------------------------------------------------


@pytest.mark.parametrize("forwarded", ["not-an-ip", "203.0.113.7:443", "fe80::1%eth0", "[2001:db8::1]", "unknown"])
def test_a_malformed_forwarded_address_falls_back_to_the_peer(server, forwarded):
    assert log_in(server, "sec-admin", "wrong", forwarded) == 200
    assert log_in(server, "sec-admin", PASSWORD, forwarded) == 302
    assert not server_errors(server)


# --- the read throttle and text logs ------------------------------------------------------------


def test_renders_are_throttled_per_client_measured(url, tmp_path, record_property):
    """One client asking for new query strings is refused (429) after the rate; the cache still answers
    it, and other clients are served. What a render and a refusal take, as the client sees them, go
    to the test report (figures, not pass/fail: the machine is shared)."""
    rate = 30
    env = {**PRODUCTION, "TITANIC_READ_THROTTLE_RATE": f"{rate}/min", "LOG_FORMAT": "text"}
    with Gunicorn(tmp_path, database_url=url, workers=1, env=env) as server:
        connection, answers = server.connect(), []
        for i in range(rate + 20):
            started = time.perf_counter()
            status, _ = server.request(
                "GET",
                f"/people?ordering=name&q={i}",
                headers=as_client("198.51.100.6"),
                connection=connection,
                check=False,
            )
            answers.append((status, (time.perf_counter() - started) * 1000))
        cached = server.request("GET", "/people?ordering=name&q=0", headers=as_client("198.51.100.6"), check=False)
        other = server.request("GET", "/people?ordering=name&q=new", headers=as_client("198.51.100.7"), check=False)
        forged = server.request(
            "GET", "/people?ordering=name&q=forged", headers=as_client("1.2.3.4, 198.51.100.6"), check=False
        )
        newline = log_in(server, "admin\nFORGED 127.0.0.1 login ok", "x", "198.51.100.8")
        time.sleep(0.5)
        lines = server.log_lines()
    assert [status for status, _ in answers] == [200] * rate + [429] * 20
    assert (cached[0], other[0], forged[0], newline) == (200, 200, 429, 200)
    record_property("full list render, median ms", statistics.median(ms for status, ms in answers[1:rate]))
    record_property("refusal (429), median ms", statistics.median(ms for status, ms in answers[rate:]))
    # Text logs: every line is a record of its own (the username's newline is escaped).
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) for line in lines if line[0] != " ")
    assert any(r"login failed for admin\nFORGED 127.0.0.1 login ok" in line for line in lines)


def test_a_hostile_username_is_one_json_line(server):
    assert log_in(server, "evil\nuser\u2028\u202e", "x", "198.51.100.9") == 200
    assert any(r["message"] == "login failed for evil\nuser\u2028\u202e" for r in records(server))
