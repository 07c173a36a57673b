"""Idempotency-Key on the /people writes (titanic.idempotency), in-process: on SQLite (`make test-sqlite`)
and PostgreSQL (`make test-postgres`). Under gunicorn and real faults: tests/test_faults.py."""

import json
import threading
import time

import pytest
from django.core.management import call_command
from django.db import OperationalError, close_old_connections, connection, connections
from django.test import override_settings
from rest_framework.test import APIClient

from passengers.models import Passenger
from passengers.tests.conftest import WRITE_PERMISSIONS, _user
from titanic.idempotency.models import LIFETIME, IdempotencyKey
from titanic.idempotency.views import KeyInFlight, KeyReused, lock_id

pytestmark = pytest.mark.django_db

KEY = '"3f9a1c2e-8d4b-4e6f-9a7b-1c2d3e4f5a6b"'
OTHER_KEY = '"0b6e7d52-0c4f-4d5e-a1b2-c3d4e5f60718"'


def keyed(key=KEY):
    return {"HTTP_IDEMPOTENCY_KEY": key}


def body(response):
    return json.loads(response.content)


def headers(response):
    """The headers a replay must repeat: all but the request's own id and the replay mark."""
    return {name: value for name, value in response.items() if name not in {"X-Request-ID", "Idempotent-Replayed"}}


def snapshot():
    return sorted(Passenger.objects.values_list("uuid", "name", "age", "fare"))


def assert_replay(again, first):
    assert (again.status_code, headers(again), again.content) == (first.status_code, headers(first), first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("a request in flight holds a PostgreSQL advisory lock; SQLite serialises writers instead")


# --- the first answer, again --------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_path", ["/people", "/people/"])
def test_a_retried_post_gets_the_first_answer_and_writes_nothing(editor_client, person_data, retry_path):
    first = editor_client.post("/people", person_data, format="json", **keyed())
    again = editor_client.post(retry_path, person_data, format="json", **keyed())
    assert first.status_code == 201 and first["Content-Type"] == "application/json"
    assert_replay(again, first)
    assert Passenger.objects.filter(name=person_data["name"]).count() == 1
    stored = IdempotencyKey.objects.get()  # the committed write has its key, with the answer it got
    assert (stored.status, bytes(stored.body), stored.content_type) == (201, first.content, "application/json")


def test_retried_put_and_patch_get_the_first_answer_even_after_later_changes(editor_client, passenger, person_data):
    path = f"/people/{passenger.uuid}"
    put = editor_client.put(path, {**person_data, "name": "Mrs. First"}, format="json", **keyed())
    patch = editor_client.patch(path, {"age": 40}, format="json", **keyed(OTHER_KEY))
    editor_client.patch(path, {"name": "Mrs. Later"}, format="json")  # no key: a change of its own
    put_again = editor_client.put(path, {**person_data, "name": "Mrs. First"}, format="json", **keyed())
    patch_again = editor_client.patch(path, {"age": 40}, format="json", **keyed(OTHER_KEY))
    assert (put.status_code, body(put)["name"], body(patch)["age"]) == (200, "Mrs. First", 40)
    assert_replay(put_again, put)
    assert_replay(patch_again, patch)
    passenger.refresh_from_db()
    assert (passenger.name, passenger.age) == ("Mrs. Later", 40)  # the retries wrote nothing


def test_a_retried_delete_gets_the_first_204_not_a_404(editor_client, passenger):
    first = editor_client.delete(f"/people/{passenger.uuid}", **keyed())
    again = editor_client.delete(f"/people/{passenger.uuid}", **keyed())
    assert (first.status_code, first.content) == (204, b"")
    assert_replay(again, first)
    assert "Content-Type" not in again
    assert editor_client.delete(f"/people/{passenger.uuid}").status_code == 404  # without the key: gone


def test_without_the_header_nothing_changes(editor_client, person_data):
    statuses = [editor_client.post("/people", person_data, format="json").status_code for _ in range(2)]
    assert statuses == [201, 201]
    assert Passenger.objects.filter(name=person_data["name"]).count() == 2
    assert not IdempotencyKey.objects.exists()


# --- the same key with another request; keys per client -----------------------------------------------


def test_the_same_key_with_another_request_is_422_and_changes_nothing(editor_client, passenger, person_data):
    assert editor_client.post("/people", person_data, format="json", **keyed()).status_code == 201
    before = snapshot()
    others = [
        ("post", "/people", {**person_data, "name": "Mr. Someone Else"}),
        ("put", f"/people/{passenger.uuid}", person_data),
        ("patch", f"/people/{passenger.uuid}", {"age": 50}),
        ("delete", f"/people/{passenger.uuid}", None),
    ]
    for method, path, data in others:
        response = getattr(editor_client, method)(path, data, format="json", **keyed())
        assert response.status_code == 422, method
        assert body(response) == {"detail": KeyReused.default_detail}
    assert snapshot() == before


def test_keys_belong_to_their_user(editor_client, token_client, person_data):
    colleague = token_client(_user("colleague", WRITE_PERMISSIONS))
    mine = editor_client.post("/people", person_data, format="json", **keyed())
    theirs = colleague.post("/people", person_data, format="json", **keyed())
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs and body(theirs)["uuid"] != body(mine)["uuid"]
    assert Passenger.objects.filter(name=person_data["name"]).count() == 2


@override_settings(TITANIC_ANONYMOUS_WRITES=True)
def test_anonymous_writers_share_one_key_space_apart_from_users(editor_client, person_data):
    first = APIClient().post("/people", person_data, format="json", **keyed())
    same = APIClient().post("/people", person_data, format="json", **keyed())
    other = APIClient().post("/people", {**person_data, "age": 1}, format="json", **keyed())
    user = editor_client.post("/people", person_data, format="json", **keyed())
    assert first.status_code == 201
    assert_replay(same, first)
    assert other.status_code == 422
    assert user.status_code == 201 and "Idempotent-Replayed" not in user
    assert Passenger.objects.filter(name=person_data["name"]).count() == 2


# --- expiry and cleanup -------------------------------------------------------------------------------------


def test_a_key_older_than_24_hours_starts_afresh(editor_client, person_data):
    first = editor_client.post("/people", person_data, format="json", **keyed())
    IdempotencyKey.objects.update(created_at=IdempotencyKey.objects.get().created_at - LIFETIME)
    again = editor_client.post("/people", {**person_data, "age": 50}, format="json", **keyed())  # no 422 either
    assert (first.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in again
    assert bytes(IdempotencyKey.objects.get().body) == again.content  # the expired key replaced
    assert Passenger.objects.filter(name=person_data["name"]).count() == 2


def test_clearidempotencykeys_deletes_the_expired_keys_only(editor_client, person_data):
    for key in (KEY, OTHER_KEY):
        editor_client.post("/people", person_data, format="json", **keyed(key))
    old = IdempotencyKey.objects.get(key=KEY.strip('"'))
    old.created_at -= LIFETIME
    old.save()
    out = call_command_output("clearidempotencykeys")
    assert out == "Deleted 1 expired idempotency key(s).\n"
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == [OTHER_KEY.strip('"')]
    assert call_command_output("clearidempotencykeys") == "Deleted 0 expired idempotency key(s).\n"


def call_command_output(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- bad keys -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ('""', "must not be empty"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "must be a quoted string"),  # unquoted
        ("abc", "must be a quoted string"),  # an sf-token
        ("42", "must be a quoted string"),  # an sf-integer
        (":YWJj:", "must be a quoted string"),  # an sf-binary
        ('"a", "b"', "must be a quoted string"),  # two keys
        ('"unterminated', "must be a quoted string"),
        ('"tab\there"', "must be a quoted string"),  # control characters are not in an sf-string
        ('"clé"', "must be ASCII"),
        ('"' + "k" * 256 + '"', "must be at most 255 characters long"),
    ],
)
def test_a_bad_key_is_400_naming_the_header_and_changes_nothing(editor_client, passenger, person_data, raw, problem):
    before = snapshot()
    for method, path, data in [("post", "/people", person_data), ("delete", f"/people/{passenger.uuid}", None)]:
        response = getattr(editor_client, method)(path, data, format="json", **keyed(raw))
        assert response.status_code == 400
        (message,) = body(response)["Idempotency-Key"]
        assert message.startswith(f"Idempotency-Key {problem}"), message
    assert snapshot() == before
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    ("raw", "same_as"),
    [
        ('"' + "k" * 255 + '"', None),  # the longest
        ('"a \\"quoted\\" key"', None),  # escapes
        (f"{KEY};source=retry", KEY),  # parameters are allowed and ignored (RFC 8941)
        (f"  {KEY}  ", KEY),
    ],
)
def test_any_sf_string_up_to_255_characters_is_a_key(editor_client, person_data, raw, same_as):
    if same_as:
        editor_client.post("/people", person_data, format="json", **keyed(same_as))
    response = editor_client.post("/people", person_data, format="json", **keyed(raw))
    assert response.status_code == 201
    assert ("Idempotent-Replayed" in response) == bool(same_as)


# --- the key is stored with the write, or not at all ----------------------------------------------------------


def test_a_refused_write_stores_no_key_so_the_corrected_request_can_use_it(editor_client, person_data):
    refused = editor_client.post("/people", {**person_data, "age": -1}, format="json", **keyed())
    corrected = editor_client.post("/people", person_data, format="json", **keyed())
    assert (refused.status_code, corrected.status_code) == (400, 201)
    assert "Idempotent-Replayed" not in corrected


def test_a_write_whose_key_cannot_be_stored_is_rolled_back(editor_client, person_data, monkeypatch):
    def database_gone(**fields):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(IdempotencyKey.objects, "create", database_gone)
    editor_client.raise_request_exception = False
    response = editor_client.post("/people", person_data, format="json", **keyed())
    assert response.status_code == 503
    assert not Passenger.objects.filter(name=person_data["name"]).exists()
    assert not IdempotencyKey.objects.exists()


def test_a_request_that_loses_the_race_for_its_key_is_409_and_its_write_undone(editor_client, editor, person_data):
    """The unique constraint on (client, key) is the last guard (the only one on SQLite): here the
    "other request" stores the key while this one writes."""
    from passengers.views import PassengerViewSet

    def perform_create(view, serializer):
        serializer.save()
        IdempotencyKey.objects.create(client=f"user:{editor.pk}", key=KEY.strip('"'), status=201, body=b"")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PassengerViewSet, "perform_create", perform_create, raising=False)
        response = editor_client.post("/people", person_data, format="json", **keyed())
    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert body(response) == {"detail": KeyInFlight.default_detail}
    assert not Passenger.objects.filter(name=person_data["name"]).exists()


def test_a_retry_while_the_first_is_in_flight_is_409_with_retry_after(editor_client, editor, person_data, postgresql):
    in_flight = connections.create_connection("default")  # another session, holding the key's lock
    try:
        with in_flight.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_id(f"user:{editor.pk}", KEY.strip('"'))])
            busy = editor_client.post("/people", person_data, format="json", **keyed())
            cursor.execute("SELECT pg_advisory_unlock_all()")
    finally:
        in_flight.close()
    assert busy.status_code == 409 and busy["Retry-After"] == "1"
    assert body(busy) == {"detail": KeyInFlight.default_detail}
    assert not Passenger.objects.filter(name=person_data["name"]).exists()
    assert editor_client.post("/people", person_data, format="json", **keyed()).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_store_one_passenger(editor_client, person_data, postgresql):
    """Eight requests with one key at once, while the table is locked so that they overlap: the one
    that took the key waits for the lock, the others are 409s; then the retries replay its answer."""
    answers = {}

    def send(i):
        try:
            answers[i] = editor_client.post("/people", person_data, format="json", **keyed())
        finally:
            close_old_connections()
            connection.close()

    lock = connections.create_connection("default")
    try:
        with lock.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE passengers_passenger IN EXCLUSIVE MODE")
            threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while len(answers) < 7 and time.monotonic() < deadline:
                time.sleep(0.05)
            answered_while_locked = len(answers)
            cursor.execute("COMMIT")
        for thread in threads:
            thread.join(timeout=30)
    finally:
        lock.close()
    statuses = sorted(answer.status_code for answer in answers.values())
    assert statuses == [201] + [409] * 7
    assert answered_while_locked == 7  # the 409s did not wait for the first request
    assert Passenger.objects.filter(name=person_data["name"]).count() == 1
    first = next(answer for answer in answers.values() if answer.status_code == 201)
    assert_replay(editor_client.post("/people", person_data, format="json", **keyed()), first)


# --- around it: throttle, response cache, browsable API, schema -------------------------------------------------


def test_a_replay_counts_against_the_write_throttle(editor_client, person_data, monkeypatch):
    from django.core.cache import cache

    from titanic.api.throttling import WriteRateThrottle

    cache.clear()
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"write": "2/min"})
    statuses = [editor_client.post("/people", person_data, format="json", **keyed()).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert Passenger.objects.filter(name=person_data["name"]).count() == 1
    cache.clear()


def test_a_replay_leaves_the_cached_reads_alone(api_client, editor_client, person_data):
    before = api_client.get("/people")
    editor_client.post("/people", person_data, format="json", **keyed())
    written = api_client.get("/people", HTTP_IF_NONE_MATCH=before["ETag"])
    editor_client.post("/people", person_data, format="json", **keyed())
    replayed = api_client.get("/people", HTTP_IF_NONE_MATCH=written["ETag"])
    assert written.status_code == 200 and person_data["name"].encode() in written.content
    assert replayed.status_code == 304  # nothing changed, so the cached answer still holds


def test_the_browsable_api_works_with_a_key_too(editor, person_data):
    api_client = APIClient(enforce_csrf_checks=True)
    api_client.force_login(editor)
    api_client.get("/api-auth/login/")
    extra = {"HTTP_X_CSRFTOKEN": api_client.cookies["csrftoken"].value, "HTTP_ACCEPT": "text/html", **keyed()}
    form = {name: str(value).lower() if value is True else str(value) for name, value in person_data.items()}
    # A multipart form, which the CSRF check parses from the stream: the fingerprint read the body first.
    first = api_client.post("/people", form, **extra)
    again = api_client.post("/people", form, **extra)
    assert first.status_code == 201 and first["Content-Type"].startswith("text/html")
    assert_replay(again, first)
    assert api_client.get("/people", HTTP_ACCEPT="text/html").status_code == 200


def test_the_schema_documents_the_header_on_every_write(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = {
        (path, method): operation
        for path, item in schema["paths"].items()
        if path.startswith("/people")
        for method, operation in item.items()
    }
    for (path, method), operation in operations.items():
        header = [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        writes = method in {"post", "put", "patch", "delete"}
        assert bool(header) == writes, (path, method)
        if writes:
            assert "24 hours" in header[0]["description"]
            assert {"400", "409", "422"} <= set(operation["responses"])
            (success,) = [code for code in operation["responses"] if code.startswith("2")]
            assert "Idempotent-Replayed" in operation["responses"][success]["headers"]
