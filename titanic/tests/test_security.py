"""What the service refuses, and why (docs/security.md), through Django's test client: unbounded metric
labels, malformed bodies in every parser, forwarded headers, credentialed answers in shared caches,
the read throttle, the Content-Security-Policy and escaped text logs. tests/test_server_security.py
repeats the defects against gunicorn with the production settings."""

import encodings.aliases
import io
import logging
import logging.config

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from prometheus_client import REGISTRY
from rest_framework.authtoken.models import Token

from passengers.models import Passenger
from passengers.tests.factories import PassengerFactory
from titanic.api.throttling import ReadRateThrottle
from titanic.logging import logging_config


def series():
    """Every labelled sample the metrics endpoint would show, as (name, labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for metric in REGISTRY.collect()
        for sample in metric.samples
    }


# --- metric labels ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_methods_are_refused_before_the_metrics_label_them(client):
    response = client.generic("QAAA", "/people")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "QAAA" not allowed.'}
    assert set(response["Allow"].split(", ")) == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    for method in ["TRACE", "CONNECT", "PROPFIND", "GETX"]:
        assert client.generic(method, "/people").status_code == 405


@pytest.mark.django_db
def test_no_label_value_comes_from_the_method_the_path_or_the_host(client):
    """The class of defect 2: one request of each kind first, so that every fixed label exists."""
    kinds = {
        "method": lambda i: client.generic(f"Q{i:04d}", "/people"),
        "path": lambda i: client.get(f"/no-such-page-{i}"),
        "host": lambda i: client.get("/people", HTTP_HOST=f"h{i}.example.com"),
        "view path": lambda i: client.get(f"/people/{i}"),
    }
    for request in kinds.values():
        request(0)
    before = series()
    for kind, request in kinds.items():
        statuses = {request(i).status_code for i in range(1, 201)}
        assert statuses <= {400, 404, 405}, kind
    assert series() == before


# --- malformed bodies ---------------------------------------------------------------------------


@pytest.fixture
def writer(django_user_model):
    """The headers of a user allowed to add and change passengers."""
    user = django_user_model.objects.create_user("writer")
    user.user_permissions.set(Permission.objects.filter(codename__in=["add_passenger", "change_passenger"]))
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def passenger(db):
    return PassengerFactory(name="Mr. Owen Harris Braund")


def nested(depth, opening="[", closing="]"):
    return (opening * depth + closing * depth).encode()


DEEP_JSON = {
    "1000 arrays": nested(1000),
    "30000 arrays (the body limit)": nested(30000),
    "1000 objects": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "arrays in a field": b'{"name": ' + nested(2000) + b"}",
    "mixed": b'[{"a":' * 600 + b"0" + b"}]" * 600,
}
# Every codec Python knows: those that are not text encodings (base64, rot13, zlib, ...) and
# idna, punycode and undefined crashed Django's multipart parser or DRF's form parser.
CHARSETS = sorted(set(encodings.aliases.aliases.values()) | {"idna", "punycode", "undefined", "utf_7"})
FORMS = {
    "form": (b"username=a%ff&password=b\xff&name=x", "application/x-www-form-urlencoded"),
    "multipart": (
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nab\xffc\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "json": (b'{"name": "a\xff"}', "application/json"),
}
PART = b'--b\r\nContent-Disposition: form-data; name="name"\r\n'
MALFORMED_MULTIPART = {
    "no boundary": (b"--x\r\n", "multipart/form-data"),
    "empty boundary": (b"--x\r\n", "multipart/form-data; boundary="),
    "non-ASCII boundary": (b"--x\r\n", "multipart/form-data; boundary=\u00e9"),
    "unterminated": (
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nabc',
        "multipart/form-data; boundary=b",
    ),
    "garbage": (b"\x00\xff" * 100, "multipart/form-data; boundary=b"),
    "bad base64 part": (
        PART + b"Content-Transfer-Encoding: base64\r\n\r\n!*\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    "too many files": (
        b"".join(
            b'--b\r\nContent-Disposition: form-data; name="f%d"; filename="f"\r\n\r\n1\r\n' % i for i in range(150)
        )
        + b"--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
}


def post(path, body, content_type, **extra):
    return Client(raise_request_exception=False).generic("POST", path, body, content_type, **extra)


@pytest.mark.django_db
@pytest.mark.parametrize("body", DEEP_JSON.values(), ids=DEEP_JSON.keys())
def test_deeply_nested_json_is_a_400_and_changes_nothing(writer, passenger, body):
    for method, path in [
        ("POST", "/people"),
        ("PUT", f"/people/{passenger.uuid}"),
        ("PATCH", f"/people/{passenger.uuid}"),
    ]:
        response = Client(raise_request_exception=False).generic(method, path, body, "application/json", **writer)
        assert response.status_code == 400, (method, response.content[:200])
    assert list(Passenger.objects.values_list("name", flat=True)) == [passenger.name]


@pytest.mark.django_db
@pytest.mark.parametrize("body", MALFORMED_MULTIPART.values(), ids=MALFORMED_MULTIPART.keys())
def test_malformed_multipart_is_a_4xx(writer, body):
    response = post("/people", *body, **writer)
    assert 400 <= response.status_code < 500, response.content[:200]
    assert not Passenger.objects.exists()
    for login in ["/admin/login/", "/api-auth/login/"]:  # Django reads what it can: the form again (200) or 400
        assert post(login, *body, REMOTE_ADDR="192.0.2.77").status_code in (200, 400)


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize("kind", FORMS)
def test_a_charset_that_cannot_decode_is_refused_and_the_others_never_crash(writer, kind):
    """Every codec Python knows, in every parser, on the API and on both login forms."""
    body, content_type = FORMS[kind]
    refused = set()
    for charset in CHARSETS:
        for path in ["/people", "/admin/login/", "/api-auth/login/"]:
            response = post(path, body, f"{content_type}; charset={charset}", REMOTE_ADDR="192.0.2.78", **writer)
            assert response.status_code < 500, (charset, path, response.content[:200])
            if response.status_code == 415:
                refused.add(charset)
    assert {"base64_codec", "rot_13", "zlib_codec", "idna", "punycode", "undefined"} <= refused
    assert not refused & {"utf_8", "latin_1", "utf_16", "cp1252", "ascii"}


# --- forwarded headers and the response cache ---------------------------------------------------


@pytest.fixture
def https_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "environ",
    [{"wsgi.url_scheme": "https"}, {"HTTP_X_FORWARDED_PROTO": "https"}],
    ids=["scheme from the server", "scheme from the proxy header"],
)
def test_an_https_answer_is_never_given_to_a_plain_http_request(client, https_redirect, environ, passenger):
    """However the scheme was decided (gunicorn once took it from X-Forwarded-Ssl), it is in the key."""
    assert client.get("/people", **environ).status_code == 200
    assert client.get("/people", **environ).status_code == 200  # cached
    assert client.get("/people").status_code == 301


@pytest.mark.django_db
def test_links_are_keyed_by_script_name_and_host_and_ignore_x_forwarded_host(client, passenger):
    def next_link(**environ):
        return client.get("/people?limit=1&offset=0", **{"HTTP_HOST": "testserver", **environ}).json()["next"]

    PassengerFactory()
    assert next_link(SCRIPT_NAME="/evil") == "http://testserver/evil/people?limit=1&offset=1"
    assert next_link() == "http://testserver/people?limit=1&offset=1"
    assert next_link(HTTP_HOST="localhost") == "http://localhost/people?limit=1&offset=1"
    assert next_link(HTTP_X_FORWARDED_HOST="evil.example", HTTP_X_FORWARDED_PORT="666") == next_link()


# --- Cache-Control on credentialed answers ------------------------------------------------------


@pytest.mark.django_db
def test_answers_to_credentialed_requests_are_private_cached_or_not(client, writer, passenger):
    anonymous = client.get("/people")
    assert "Cache-Control" not in anonymous
    for _ in range(2):  # rendered, then from the cache
        assert client.get("/people", **writer)["Cache-Control"] == "private"
    assert client.get("/people", HTTP_COOKIE="anything=1")["Cache-Control"] == "private"
    assert "Cache-Control" not in client.get("/people")  # the cached entry itself stays public
    admin = client.get("/admin/login/", HTTP_COOKIE="csrftoken=x")
    assert {"private", "no-store"} <= set(admin["Cache-Control"].replace(" ", "").split(","))


# --- the read throttle --------------------------------------------------------------------------


@pytest.fixture
def three_renders_a_minute(monkeypatch):
    cache.clear()
    monkeypatch.setattr(ReadRateThrottle, "THROTTLE_RATES", {"read": "3/min"})
    yield
    cache.clear()


@pytest.mark.django_db
def test_renders_are_throttled_per_client_and_cached_answers_are_not(client, passenger, three_renders_a_minute):
    def read(query, address="192.0.2.30", **headers):
        return client.get(f"/people?{query}", REMOTE_ADDR=address, **headers)

    assert [read(f"q={i}").status_code for i in range(4)] == [200, 200, 200, 429]
    throttled = read("q=new")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert read("q=0").status_code == 200  # kept in the cache: costs no render, counts nothing
    assert read("q=0", HTTP_COOKIE="x=1").status_code == 429  # a cookie always renders
    assert read("q=new", address="192.0.2.31").status_code == 200  # another client
    # X-Forwarded-For is the client's own word here (no trusted proxy): varying it changes nothing.
    assert read("q=other", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429


@pytest.mark.django_db
def test_behind_the_alb_the_throttle_counts_the_address_it_saw(client, settings, passenger, three_renders_a_minute):
    settings.TITANIC_TRUSTED_PROXIES = 1
    statuses = [
        client.get(
            f"/people?q={i}", REMOTE_ADDR="10.0.1.20", HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 203.0.113.7"
        ).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    other = client.get("/people?q=9", REMOTE_ADDR="10.0.1.20", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 200


# --- Content-Security-Policy --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/people", "/admin/login/", "/api/docs/", "/api/redoc/"])
def test_every_page_has_a_content_security_policy_without_inline_scripts(client, path):
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in client.get(path, HTTP_ACCEPT="text/html")["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"


# --- text logs ----------------------------------------------------------------------------------


def test_text_logs_escape_what_a_client_can_put_in_a_message():
    stream = io.StringIO()
    config = logging_config("text")
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logger = logging.getLogger("titanic.api")
        logger.warning("login failed for %s", "admin\nFORGED INFO line\r\x1b[2J\u2028\u202eevil")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        logging.config.dictConfig(logging_config("text"))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(r"login failed for admin\nFORGED INFO line\r\x1b[2J\u2028\u202eevil")
    assert "with a traceback" in lines[1] and "Traceback (most recent call last):" in lines[2]  # kept as lines
