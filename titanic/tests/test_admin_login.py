"""The login lockout (django-axes) through the Django test client, on the project's database.

Logins go through the admin's login form, as a browser's would; each request names its client
address (REMOTE_ADDR, or X-Forwarded-For behind trusted proxies).
"""

import io
import logging

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.backends import ModelBackend
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tests.example import person_body
from titanic.clients import client_ip

PASSWORD = "a-long-test-password"  # pragma: allowlist secret
LOGIN = "/admin/login/?next=/admin/"
LIMIT = 5


@pytest.fixture(autouse=True)
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.TITANIC_TRUSTED_PROXIES = 0


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_superuser("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_superuser("bob", password=PASSWORD)


def log_in(client, username, password=PASSWORD, address="192.0.2.10", **headers):
    """POST the admin login form; 302 = logged in, 200 = form again (wrong password), 429 = locked out."""
    client.logout()
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def fail(client, times, username, address="192.0.2.10", **headers):
    """Wrong passwords: the form again (200), or 429 once this one reaches the limit."""
    return [log_in(client, username, "wrong-password", address, **headers).status_code for _ in range(times)]


@pytest.mark.django_db
def test_a_user_is_locked_out_after_the_limit_from_any_address(client, alice, bob):
    for attempt in range(LIMIT):
        fail(client, 1, "alice", address=f"192.0.2.{attempt}")
    locked = log_in(client, "alice", address="198.51.100.1")
    assert locked.status_code == 429
    assert b"locked" in locked.content.lower()
    assert "_auth_user_id" not in client.session
    # Only alice: bob logs in from the same addresses.
    assert log_in(client, "bob", address="192.0.2.0").status_code == 302


@pytest.mark.django_db
def test_an_address_is_locked_out_after_the_limit_for_any_user(client, alice):
    for attempt in range(LIMIT):
        fail(client, 1, f"guess{attempt}", address="203.0.113.5")
    assert log_in(client, "alice", address="203.0.113.5").status_code == 429
    assert log_in(client, "alice", address="203.0.113.6").status_code == 302


@pytest.mark.django_db
def test_the_limit_th_failure_locks_and_a_success_before_it_resets_the_count(client, alice):
    assert fail(client, LIMIT - 1, "alice") == [200] * (LIMIT - 1)
    assert log_in(client, "alice").status_code == 302
    assert fail(client, LIMIT, "alice") == [200] * (LIMIT - 1) + [429]


@pytest.fixture
def mallory(django_user_model):
    """A user with no permission at all: /api-auth/login/ logs anyone in."""
    return django_user_model.objects.create_user("mallory", password=PASSWORD)


def api_login(client, username, address="192.0.2.10"):
    client.logout()
    form = {"username": username, "password": PASSWORD}
    return client.post("/api-auth/login/", form, REMOTE_ADDR=address).status_code


@pytest.mark.django_db
def test_logging_in_as_another_user_does_not_clear_the_address_s_guesses(client, alice, mallory):
    """Defect 1: with django-axes' reset on success, four guesses at alice's password and a login as
    mallory, over and over, gave unlimited guesses from one address."""
    assert fail(client, LIMIT - 1, "alice") == [200] * (LIMIT - 1)
    assert api_login(client, "mallory") == 302
    assert fail(client, 1, "alice") == [429]
    # Locked both ways: alice from anywhere, and this address for anyone (mallory included).
    assert log_in(client, "alice", address="198.51.100.9").status_code == 429
    assert api_login(client, "mallory") == 429


@pytest.mark.django_db
def test_a_success_clears_only_the_failures_of_its_own_username(client, alice, bob):
    fail(client, 2, "alice")
    fail(client, 2, "alice", address="198.51.100.4")
    fail(client, 2, "nobody")
    assert log_in(client, "alice").status_code == 302
    remaining = set(AccessAttempt.objects.values_list("username", "ip_address", "failures_since_start"))
    assert remaining == {("nobody", "192.0.2.10", 2)}
    # The address still has its two failures against another name: three more lock it.
    assert fail(client, LIMIT - 2, "bob") == [200, 200, 429]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [LOGIN, "/api-auth/login/"])
def test_an_over_long_username_is_refused_unhashed_and_counted(client, alice, path, monkeypatch):
    """Defect 3: Django's form does not enforce max_length; the password was hashed, nothing counted, a 500."""
    checked = []
    monkeypatch.setattr(ModelBackend, "authenticate", lambda *args, **kwargs: checked.append(args))
    statuses = []
    for length in [151, 300, 60_000]:
        response = client.post(path, {"username": "a" * length, "password": "guess"}, REMOTE_ADDR="192.0.2.44")
        statuses.append(response.status_code)
        if response.status_code == 400:
            assert response.json() == {"detail": "A username has at most 150 characters."}
    assert statuses == [400, 400, 400]
    assert checked == []  # no password was hashed
    assert {len(name) for name in AccessAttempt.objects.values_list("username", flat=True)} == {150}
    assert AccessAttempt.objects.get().failures_since_start == 3
    codes = [client.post(path, {"username": "b" * 151, "password": "x"}, REMOTE_ADDR="192.0.2.44").status_code]
    codes.append(client.post(path, {"username": "b" * 151, "password": "x"}, REMOTE_ADDR="192.0.2.44").status_code)
    assert codes == [400, 429]  # the fifth failure from the address locks it
    assert log_in(client, "alice", address="192.0.2.44").status_code == 429


@pytest.mark.django_db
def test_a_username_of_the_longest_allowed_length_is_an_ordinary_failure(client, alice):
    assert log_in(client, "a" * 150, "wrong").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "forwarded", ["not-an-ip", "203.0.113.7:443", "[2001:db8::1]", "fe80::1%eth0", "999.1.1.1", "unknown", "1.1.1.1, x"]
)
def test_behind_the_alb_a_malformed_forwarded_address_falls_back_to_the_peer(client, alice, settings, forwarded):
    """Defect 6: the entry was stored in an inet column (a 500 on login)."""
    settings.TITANIC_TRUSTED_PROXIES = 1
    assert fail(client, 1, "alice", address="10.0.1.20", HTTP_X_FORWARDED_FOR=forwarded) == [200]
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["10.0.1.20"]
    assert log_in(client, "alice", address="10.0.1.20", HTTP_X_FORWARDED_FOR=forwarded).status_code == 302


@pytest.mark.django_db
def test_the_browsable_api_login_is_locked_too(client, alice):
    fail(client, LIMIT, "alice")
    response = client.post("/api-auth/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="192.0.2.99")
    assert response.status_code == 429


@pytest.mark.django_db
def test_every_failure_is_still_logged_including_refused_ones(client, alice, caplog):
    with caplog.at_level(logging.WARNING, logger="titanic.api"):
        fail(client, LIMIT, "alice")
        assert log_in(client, "alice").status_code == 429
    failures = [r for r in caplog.records if r.name == "titanic.api" and r.getMessage() == "login failed for alice"]
    assert len(failures) == LIMIT + 1
    assert {r.client for r in failures} == {"192.0.2.10"}


@pytest.mark.django_db
def test_tokens_keep_working_for_a_locked_out_user(client, alice):
    fail(client, LIMIT, "alice")
    assert log_in(client, "alice").status_code == 429
    out = io.StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = Token.objects.get(user=alice).key
    assert key in out.getvalue()
    client.logout()
    response = client.post("/people", person_body(), content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201, response.content


def lock_out_alice_by_name(client):
    for attempt in range(LIMIT):
        fail(client, 1, "alice", address=f"198.51.100.{attempt}")


def lock_out_the_address(client):
    for attempt in range(LIMIT):
        fail(client, 1, f"guess{attempt}", address="192.0.2.10")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lock_out", "command"),
    [
        (lock_out_alice_by_name, ["axes_reset_username", "alice"]),
        (lock_out_the_address, ["axes_reset_ip", "192.0.2.10"]),
        (lock_out_alice_by_name, ["axes_reset"]),
    ],
)
def test_an_operator_unlocks(client, alice, lock_out, command):
    lock_out(client)
    assert log_in(client, "alice", address="192.0.2.10").status_code == 429
    call_command(*command, stdout=io.StringIO())
    assert log_in(client, "alice", address="192.0.2.10").status_code == 302


@pytest.mark.django_db
def test_behind_the_alb_the_address_is_the_one_it_appended(client, alice, settings):
    settings.TITANIC_TRUSTED_PROXIES = 1
    # The client forges what it sends; the ALB appends the peer it saw (203.0.113.7).
    for attempt in range(LIMIT):
        fail(client, 1, f"guess{attempt}", address="10.0.1.20", HTTP_X_FORWARDED_FOR=f"1.1.1.{attempt}, 203.0.113.7")
    assert log_in(client, "alice", address="10.0.1.20", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    # Another client behind the same load balancer node is not locked out.
    assert log_in(client, "alice", address="10.0.1.20", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.7", "10.0.1.20"),  # no trusted proxy: the header is the client's word
        (1, None, "10.0.1.20"),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "1.1.1.1, 203.0.113.7", "203.0.113.7"),
        (2, "1.1.1.1, 203.0.113.7, 10.0.0.5", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.1.20"),  # shorter than the proxy chain: not trusted
        (1, "1.1.1.1, ", "10.0.1.20"),
        (1, "1.1.1.1, not-an-ip", "10.0.1.20"),  # malformed: the peer, never the forgeable entry left of it
        (1, "2001:DB8:0:0::1", "2001:db8::1"),  # canonical form: one count per address
        (1, "fe80::1%eth0", "10.0.1.20"),
        (0, None, "10.0.1.20"),
    ],
)
def test_client_ip(rf, settings, proxies, forwarded, expected):
    settings.TITANIC_TRUSTED_PROXIES = proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.1.20", **headers)) == expected


@pytest.mark.django_db
def test_a_superuser_can_unlock_in_the_admin(client, alice, bob):
    lock_out_alice_by_name(client)
    client.force_login(bob)
    changelist = client.get("/admin/axes/accessattempt/")
    assert changelist.status_code == 200
    assert b"alice" in changelist.content
    # One row per (username, address): select alice's and delete them.
    selected = list(AccessAttempt.objects.filter(username="alice").values_list("pk", flat=True))
    assert len(selected) == LIMIT
    form = {"action": "delete_selected", "_selected_action": selected, "post": "yes"}
    assert client.post("/admin/axes/accessattempt/", form).status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert log_in(client, "alice", address="192.0.2.10").status_code == 302
