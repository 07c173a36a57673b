"""The /people contract (README.md, "The /people contract") and the additive features around it."""

import json
import uuid

import pytest
from django.http import HttpResponse
from django.test import override_settings
from rest_framework.throttling import SimpleRateThrottle

from passengers.models import CONTRACT_FIELDS, Passenger
from passengers.serializers import PassengerSerializer
from passengers.tests.factories import PassengerFactory
from tests.example import person_body
from titanic import __version__

pytestmark = pytest.mark.django_db

PERSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "uuid": str,
    "survived": bool,
    "passengerClass": int,
    "name": str,
    "sex": str,
    "age": (int, float),
    "siblingsOrSpousesAboard": int,
    "parentsOrChildrenAboard": int,
    "fare": float,
}


def body(response):
    return json.loads(response.content)


def snapshot():
    return sorted(
        Passenger.objects.values_list(*[f.attname for f in Passenger._meta.fields if f.attname != "updated_at"])
    )


def assert_person(data):
    assert list(data) == list(CONTRACT_FIELDS)  # the contract's fields, in its order
    for name, types in PERSON_TYPES.items():
        assert isinstance(data[name], types), name
        assert not isinstance(data[name], bool) or name == "survived", name
    uuid.UUID(data["uuid"])


# --- the contract table ---------------------------------------------------------------------------


def test_the_contract_field_list_drives_the_serializer():
    assert set(CONTRACT_FIELDS) == set(PERSON_TYPES)  # PERSON_TYPES restates the README's contract table
    fields = PassengerSerializer().fields
    assert list(fields) == list(CONTRACT_FIELDS)
    assert {name: field.source for name, field in fields.items()} == CONTRACT_FIELDS
    assert [name for name, field in fields.items() if field.read_only] == ["uuid"]


@pytest.mark.parametrize("path", ["/people", "/people/"])
def test_list_returns_every_person_as_a_json_array(api_client, path):
    PassengerFactory.create_batch(3)
    response = api_client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = body(response)
    assert isinstance(data, list) and len(data) == 3
    for item in data:
        assert_person(item)


@pytest.mark.parametrize("slash", ["", "/"])
def test_create_returns_201_with_the_created_person(editor_client, person_data, slash):
    response = editor_client.post("/people" + slash, person_data, format="json")
    assert response.status_code == 201
    data = body(response)
    assert_person(data)
    assert {k: v for k, v in data.items() if k != "uuid"} == person_data
    assert Passenger.objects.get(uuid=data["uuid"]).name == person_data["name"]


@pytest.mark.parametrize("slash", ["", "/"])
def test_get_one_returns_the_person(api_client, passenger, slash):
    response = api_client.get(f"/people/{passenger.uuid}{slash}")
    assert response.status_code == 200
    assert body(response) == {"uuid": str(passenger.uuid), **person_body(survived=False)}


def test_json_number_forms_match_the_contract(api_client):
    """Integral ages render as integers, fractional ones as decimals; fare always has a fraction."""
    baby = PassengerFactory.create(age=0.42, fare=263)
    adult = PassengerFactory.create(age=22.0, fare=7.25)
    assert b'"age":0.42' in api_client.get(f"/people/{baby.uuid}").content
    assert b'"fare":263.0' in api_client.get(f"/people/{baby.uuid}").content
    assert b'"age":22,' in api_client.get(f"/people/{adult.uuid}").content
    listed = api_client.get("/people").content
    assert b'"age":0.42' in listed and b'"fare":263.0' in listed and b'"age":22,' in listed
    assert b'"survived":true' in listed or b'"survived":false' in listed


@pytest.mark.parametrize("slash", ["", "/"])
def test_put_replaces_and_returns_the_person(editor_client, passenger, person_data, slash):
    person_data.update(name="Mrs. Changed", age=30.5, sex="female")
    response = editor_client.put(f"/people/{passenger.uuid}{slash}", person_data, format="json")
    assert response.status_code == 200
    assert body(response) == {"uuid": str(passenger.uuid), **person_data}
    passenger.refresh_from_db()
    assert (passenger.name, passenger.age, passenger.sex) == ("Mrs. Changed", 30.5, "female")


@pytest.mark.parametrize("slash", ["", "/"])
def test_delete_returns_204_with_an_empty_body(editor_client, passenger, slash):
    response = editor_client.delete(f"/people/{passenger.uuid}{slash}")
    assert response.status_code == 204
    assert response.content == b""
    assert not Passenger.objects.filter(uuid=passenger.uuid).exists()


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_unknown_uuid_is_404_with_a_json_body(editor_client, person_data, method):
    data = person_data if method in ("put", "patch") else None
    response = getattr(editor_client, method)(f"/people/{uuid.uuid4()}", data, format="json")
    assert response.status_code == 404
    assert body(response) == {"detail": "No Passenger matches the given query."}


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "49dc24bd-906d-4497-bcfc-ecc8c309ecfcX", "%00", "' OR 1=1 --"])
def test_malformed_uuid_is_404_never_500(editor_client, person_data, bad_id):
    for method in ("get", "put", "delete"):
        data = person_data if method == "put" else None
        response = getattr(editor_client, method)(f"/people/{bad_id}", data, format="json")
        assert response.status_code == 404
        assert "detail" in body(response)


def test_patch_changes_only_the_given_fields(editor_client, passenger):
    response = editor_client.patch(f"/people/{passenger.uuid}", {"age": 23}, format="json")
    assert response.status_code == 200
    assert body(response)["age"] == 23 and body(response)["name"] == "Mr. Owen Harris Braund"


def test_browser_gets_the_browsable_api_on_the_same_url(api_client, passenger):
    response = api_client.get("/people", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"Mr. Owen Harris Braund" in response.content


def test_json_is_the_default_for_any_other_client(api_client, passenger):
    for accept in ["*/*", "application/json", ""]:
        response = api_client.get("/people", HTTP_ACCEPT=accept) if accept else api_client.get("/people")
        assert response["Content-Type"] == "application/json"


def test_welcome(api_client):
    data = body(api_client.get("/"))
    assert data["message"] == "Welcome to the Titanic API"
    assert data["version"] == __version__
    assert data["docs"].endswith("/api/docs/") and data["people"].endswith("/people")


# --- bad input: a clear 4xx naming the problem, and nothing changes --------------------------------

BAD_FIELDS = [
    ("survived", 1, "boolean"),
    ("survived", "true", "boolean"),
    ("survived", None, "null"),
    ("passengerClass", 4, "valid choice"),
    ("passengerClass", 0, "valid choice"),
    ("passengerClass", "1", "integer"),
    ("passengerClass", 1.5, "integer"),
    ("passengerClass", True, "integer"),
    ("name", "", "blank"),
    ("name", "   ", "blank"),
    ("name", 42, "string"),
    ("name", "x" * 201, "200 characters"),
    ("name", "nul\x00byte", "Null characters"),
    ("sex", "unknown", "valid choice"),
    ("sex", "Male", "valid choice"),
    ("sex", ["male"], "string"),
    ("age", -1, "greater than or equal to 0"),
    ("age", 151, "less than or equal to 150"),
    ("age", "22", "number"),
    ("age", {"value": 22}, "number"),
    ("siblingsOrSpousesAboard", -1, "greater than or equal to 0"),
    ("siblingsOrSpousesAboard", 0.5, "integer"),
    ("siblingsOrSpousesAboard", 10**6, "less than or equal to"),
    ("parentsOrChildrenAboard", -2, "greater than or equal to 0"),
    ("parentsOrChildrenAboard", "2", "integer"),
    ("fare", -0.01, "greater than or equal to 0"),
    ("fare", "7.25", "number"),
    ("fare", 1e309, "not JSON compliant"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS)
def test_bad_field_is_400_naming_the_field_and_changes_nothing(
    editor_client, passenger, person_data, field, value, message
):
    before = snapshot()
    person_data[field] = value
    payload = json.dumps(person_data, allow_nan=True)  # 1e309 travels as the literal Infinity
    for method, path in [
        ("post", "/people"),
        ("put", f"/people/{passenger.uuid}"),
        ("patch", f"/people/{passenger.uuid}"),
    ]:
        response = getattr(editor_client, method)(path, payload, content_type="application/json")
        assert response.status_code == 400, (method, response.content)
        errors = body(response)
        assert field in errors or "detail" in errors, errors
        assert message.lower() in json.dumps(errors).lower(), errors
    assert snapshot() == before


@pytest.mark.parametrize("field", list(PERSON_TYPES)[1:])
def test_missing_field_is_400(editor_client, person_data, field):
    del person_data[field]
    response = editor_client.post("/people", person_data, format="json")
    assert response.status_code == 400
    assert body(response) == {field: ["This field is required."]}
    assert Passenger.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"name": }', b"[]", b'"just a string"', b"null", b"\xff\xfe", b'{"age": NaN}', b'{"fare": 1e999}', b""],
)
def test_malformed_json_is_400(editor_client, raw):
    response = editor_client.generic("POST", "/people", raw, content_type="application/json")
    assert response.status_code == 400
    assert body(response)
    assert Passenger.objects.count() == 0


def test_unknown_fields_and_a_client_chosen_uuid_are_ignored(editor_client, person_data):
    chosen = str(uuid.uuid4())
    response = editor_client.post("/people", {**person_data, "uuid": chosen, "admin": True}, format="json")
    assert response.status_code == 201
    assert body(response)["uuid"] != chosen


def test_oversized_body_is_413(editor_client, person_data):
    person_data["name"] = "x" * 100_000
    response = editor_client.post("/people", person_data, format="json")
    assert response.status_code == 413
    assert "too large" in body(response)["detail"]
    assert Passenger.objects.count() == 0


@pytest.mark.parametrize(("method", "path"), [("delete", "/people"), ("put", "/people"), ("post", "/people/stats")])
def test_wrong_method_is_405(editor_client, method, path):
    response = getattr(editor_client, method)(path)
    assert response.status_code == 405
    assert "not allowed" in body(response)["detail"]


def test_post_to_a_person_is_405(editor_client, passenger, person_data):
    response = editor_client.post(f"/people/{passenger.uuid}", person_data, format="json")
    assert response.status_code == 405


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/csv"])
def test_unsupported_media_type_is_415(editor_client, content_type):
    response = editor_client.generic("POST", "/people", b"survived=true", content_type=content_type)
    assert response.status_code == 415
    assert "Unsupported media type" in body(response)["detail"]


def test_unknown_path_is_a_json_404(api_client):
    response = api_client.get("/no/such/thing")
    assert response.status_code == 404
    assert body(response) == {"detail": "Not found."}


def test_invalid_content_length_is_400(editor_client):
    response = editor_client.generic("POST", "/people", b"{}", content_type="application/json", CONTENT_LENGTH="abc")
    assert response.status_code == 400


def test_form_input_from_the_browsable_api_is_accepted(editor_client):
    form = {"survived": "true", "passengerClass": "1", "name": "Miss. Form", "sex": "female", "age": "30",
            "siblingsOrSpousesAboard": "0", "parentsOrChildrenAboard": "0", "fare": "10"}  # fmt: skip
    response = editor_client.post("/people", form)  # multipart, as the HTML form sends
    assert response.status_code == 201
    assert body(response)["passengerClass"] == 1 and body(response)["fare"] == 10.0


# --- authentication and permissions ----------------------------------------------------------------


def test_reads_are_public(api_client, passenger):
    assert api_client.get("/people").status_code == 200
    assert api_client.get(f"/people/{passenger.uuid}").status_code == 200
    assert api_client.get("/people/stats").status_code == 200


def test_anonymous_writes_are_401_and_change_nothing(api_client, passenger, person_data):
    before = snapshot()
    for method, path in [
        ("post", "/people"),
        ("put", f"/people/{passenger.uuid}"),
        ("patch", f"/people/{passenger.uuid}"),
        ("delete", f"/people/{passenger.uuid}"),
    ]:
        response = getattr(api_client, method)(path, person_data, format="json")
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Token"
        assert body(response) == {"detail": "Authentication credentials were not provided."}
    assert snapshot() == before


def test_a_bad_token_is_401(api_client, passenger):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api_client.delete(f"/people/{passenger.uuid}")
    assert response.status_code == 401
    assert body(response) == {"detail": "Invalid token."}
    # reads with a bad token fail too: the client should know its token is wrong
    assert api_client.get("/people").status_code == 401


def test_authenticated_without_permission_is_403(reader_client, passenger, person_data):
    before = snapshot()
    assert reader_client.get("/people").status_code == 200
    assert reader_client.post("/people", person_data, format="json").status_code == 403
    assert reader_client.put(f"/people/{passenger.uuid}", person_data, format="json").status_code == 403
    assert reader_client.delete(f"/people/{passenger.uuid}").status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize(
    ("permission", "allowed"),
    [("add_passenger", "post"), ("change_passenger", "put"), ("delete_passenger", "delete")],
)
def test_each_write_needs_its_own_permission(reader, passenger, person_data, permission, allowed):
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    reader.user_permissions.add(Permission.objects.get(codename=permission))
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=reader).key}")
    expected = {"post": 201, "put": 200, "delete": 204}
    for method, path in [
        ("post", "/people"),
        ("put", f"/people/{passenger.uuid}"),
        ("delete", f"/people/{passenger.uuid}"),
    ]:
        response = getattr(api_client, method)(path, person_data, format="json")
        assert response.status_code == (expected[method] if method == allowed else 403), method


def test_session_login_can_write_with_csrf(editor, person_data):
    from rest_framework.test import APIClient

    api_client = APIClient(enforce_csrf_checks=True)
    api_client.force_login(editor)
    assert api_client.post("/people", person_data, format="json").status_code == 403  # no CSRF token
    api_client.get("/api-auth/login/")
    token = api_client.cookies["csrftoken"].value
    assert api_client.post("/people", person_data, format="json", HTTP_X_CSRFTOKEN=token).status_code == 201


@override_settings(TITANIC_ANONYMOUS_WRITES=True)
def test_anonymous_writes_switch_opens_writes(api_client, person_data):
    response = api_client.post("/people", person_data, format="json")
    assert response.status_code == 201
    person = body(response)["uuid"]
    assert api_client.delete(f"/people/{person}").status_code == 204


def test_anonymous_writes_switch_logs_a_warning_at_startup(caplog):
    from django.apps import apps

    with override_settings(TITANIC_ANONYMOUS_WRITES=True), caplog.at_level("WARNING"):
        apps.get_app_config("passengers").ready()
    assert "TITANIC_ANONYMOUS_WRITES is on" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        apps.get_app_config("passengers").ready()
    assert "TITANIC_ANONYMOUS_WRITES" not in caplog.text


def test_drf_create_token_command_gives_a_working_token(editor, person_data):
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    call_command("drf_create_token", "editor", stdout=open("/dev/null", "w"))  # noqa: SIM115
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=editor).key}")
    assert api_client.post("/people", person_data, format="json").status_code == 201


def test_writes_are_throttled_with_retry_after(editor_client, person_data, monkeypatch):
    from django.core.cache import cache

    from titanic.api.throttling import WriteRateThrottle

    cache.clear()
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"write": "3/min"})
    statuses = [editor_client.post("/people", person_data, format="json").status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    response = editor_client.post("/people", person_data, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "throttled" in body(response)["detail"]
    assert Passenger.objects.count() == 3
    assert editor_client.get("/people").status_code == 200  # reads are not throttled
    cache.clear()


def test_throttle_rate_comes_from_the_environment():
    assert SimpleRateThrottle.THROTTLE_RATES["write"] == "10000/min"  # set by the root conftest.py


# --- filters, search, ordering, pagination ---------------------------------------------------------


@pytest.fixture
def crowd(db):
    return [
        PassengerFactory(name="Miss. Alpha", survived=True, passenger_class=1, sex="female", age=5, fare=100),
        PassengerFactory(name="Mr. Beta", survived=False, passenger_class=3, sex="male", age=40, fare=7.5),
        PassengerFactory(name="Mrs. Gamma", survived=True, passenger_class=2, sex="female", age=60.5, fare=20),
        PassengerFactory(name="Mx. Delta", survived=False, passenger_class=1, sex="other", age=0.42, fare=0),
    ]


def names(response):
    data = body(response)
    return [p["name"] for p in (data["results"] if isinstance(data, dict) else data)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("survived=true", ["Miss. Alpha", "Mrs. Gamma"]),
        ("survived=false&passengerClass=1", ["Mx. Delta"]),
        ("passengerClass=1&survived=true", ["Miss. Alpha"]),
        ("sex=other", ["Mx. Delta"]),
        ("ageMin=5&ageMax=40", ["Miss. Alpha", "Mr. Beta"]),
        ("fareMin=7.5&fareMax=20", ["Mr. Beta", "Mrs. Gamma"]),
        ("search=mrs", ["Mrs. Gamma"]),
        ("search=A", ["Miss. Alpha", "Mr. Beta", "Mrs. Gamma", "Mx. Delta"]),
        ("ordering=-age", ["Mrs. Gamma", "Mr. Beta", "Miss. Alpha", "Mx. Delta"]),
        ("ordering=passengerClass,name", ["Miss. Alpha", "Mx. Delta", "Mrs. Gamma", "Mr. Beta"]),
        ("unknownParameter=1", ["Miss. Alpha", "Mr. Beta", "Mrs. Gamma", "Mx. Delta"]),
    ],
)
def test_filters_search_and_ordering(api_client, crowd, query, expected):
    response = api_client.get(f"/people?{query}")
    assert response.status_code == 200
    assert names(response) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("survived=maybe", "survived"),
        ("passengerClass=4", "passengerClass"),
        ("sex=robot", "sex"),
        ("ageMin=abc", "ageMin"),
        ("fareMax=NaN", "fareMax"),
        ("ageMax=1e999", "ageMax"),
        ("ordering=password", "ordering"),
        ("search=%00", "search"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=5000", "limit"),
        ("limit=2&offset=-1", "offset"),
        ("limit=2&offset=99999999999999999999", "offset"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(api_client, crowd, query, field):
    response = api_client.get(f"/people?{query}")
    assert response.status_code == 400, response.content
    assert field in body(response)
    assert api_client.get(f"/people/stats?{query}").status_code in (200, 400)


def test_pagination_is_opt_in(api_client, crowd):
    assert isinstance(body(api_client.get("/people")), list)
    page = body(api_client.get("/people?limit=2&offset=1"))
    assert page["count"] == 4
    assert [p["name"] for p in page["results"]] == ["Mr. Beta", "Mrs. Gamma"]
    assert "offset=3" in page["next"] and page["previous"] is not None
    last = body(api_client.get("/people?limit=2&offset=3"))
    assert [p["name"] for p in last["results"]] == ["Mx. Delta"] and last["next"] is None
    assert body(api_client.get("/people?limit=2&offset=10"))["results"] == []


def test_pagination_combines_with_filters(api_client, crowd):
    page = body(api_client.get("/people?survived=true&limit=1"))
    assert page["count"] == 2 and [p["name"] for p in page["results"]] == ["Miss. Alpha"]


# --- conditional GET and freshness -----------------------------------------------------------------


def test_list_etag_and_304(api_client, crowd):
    first = api_client.get("/people")
    etag = first["ETag"]
    assert etag
    repeat = api_client.get("/people", HTTP_IF_NONE_MATCH=etag)
    assert repeat.status_code == 304 and repeat.content == b""
    assert api_client.get("/people?sex=male", HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_detail_etag_and_304(api_client, passenger):
    etag = api_client.get(f"/people/{passenger.uuid}")["ETag"]
    assert api_client.get(f"/people/{passenger.uuid}", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert api_client.get(f"/people/{passenger.uuid}", HTTP_IF_NONE_MATCH='"other"').status_code == 200


@pytest.mark.parametrize("write", ["post", "put", "patch", "delete", "orm"])
def test_a_write_changes_the_list_and_its_etag_at_once(api_client, editor_client, crowd, person_data, write):
    before = api_client.get("/people")
    target = f"/people/{crowd[0].uuid}"
    if write == "post":
        editor_client.post("/people", person_data, format="json")
    elif write == "put":
        editor_client.put(target, person_data, format="json")
    elif write == "patch":
        editor_client.patch(target, {"fare": 1.5}, format="json")
    elif write == "delete":
        editor_client.delete(target)
    else:  # the admin and loadcsv write through the ORM
        crowd[0].fare = 99.5
        crowd[0].save()
    after = api_client.get("/people", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert after.content != before.content


def _headers(response):
    return {name: value for name, value in response.items() if name != "X-Request-ID"}


@pytest.mark.parametrize("path", ["/people?ordering=age", "/people/{uuid}", "/people/stats?sex=female"])
def test_a_repeated_anonymous_read_gets_the_very_same_response_from_the_cache(
    api_client, crowd, path, django_assert_num_queries
):
    path = path.format(uuid=crowd[0].uuid)
    fresh = api_client.get(path)
    with django_assert_num_queries(1) as queries:
        cached = api_client.get(path)
    assert "passengers_datasetversion" in queries.captured_queries[0]["sql"]  # nothing else runs
    assert (cached.status_code, _headers(cached), cached.content) == (fresh.status_code, _headers(fresh), fresh.content)
    assert cached["ETag"] and cached["X-Request-ID"] != fresh["X-Request-ID"]


def _http_samples():
    """django-prometheus's request samples: counts (histograms by their +Inf bucket and _count), no sums."""
    from prometheus_client import REGISTRY

    return {
        (
            sample.name,
            tuple(sorted((name, value) for name, value in sample.labels.items() if name != "le")),
        ): sample.value
        for metric in REGISTRY.collect()
        if metric.name.startswith("django_http_")
        # DRF's rendered JSON counts as a template response named "None"; a cached answer is not one.
        and metric.name != "django_http_responses_total_by_templatename"
        for sample in metric.samples
        if not sample.name.endswith(("_created", "_sum")) and sample.labels.get("le", "+Inf") == "+Inf"
    }


def _moved_by(read):
    before = _http_samples()
    read()
    return {key: value - before.get(key, 0) for key, value in _http_samples().items() if value != before.get(key, 0)}


@pytest.mark.parametrize(("path", "view"), [("/people", "people-list"), ("/people/{uuid}", "people-detail")])
def test_a_cached_answer_moves_the_same_metrics_as_a_rendered_one(api_client, crowd, path, view):
    path = path.format(uuid=crowd[0].uuid)
    rendered = _moved_by(lambda: api_client.get(path))
    cached = _moved_by(lambda: api_client.get(path))
    by_view = (
        "django_http_requests_total_by_view_transport_method_total",
        (("method", "GET"), ("transport", "http"), ("view", view)),
    )
    assert rendered[by_view] == 1
    assert cached == rendered


def test_reads_with_a_bad_token_or_a_cookie_go_the_whole_way(api_client, editor_client, crowd):
    api_client.get("/people")  # cached for anonymous readers
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api_client.get("/people").status_code == 401
    api_client.credentials()
    api_client.cookies["sessionid"] = "not-a-real-session"
    assert api_client.get("/people").status_code == 200
    assert editor_client.get("/people").json() == api_client.get("/people").json()


def test_the_cache_keeps_each_representation_and_host_apart(api_client, crowd):
    api_client.get("/people")
    html = api_client.get("/people", HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and html["Content-Type"].startswith("text/html")
    assert api_client.get("/people", HTTP_HOST="evil.example").status_code == 400
    bad = api_client.get("/people?passengerClass=9")
    assert bad.status_code == 400 and api_client.get("/people?passengerClass=9").status_code == 400
    assert api_client.head("/people")["Content-Type"] == "application/json"


def test_a_cached_answer_keeps_its_security_headers_and_plain_http_is_still_redirected(api_client, crowd, settings):
    settings.SECURE_SSL_REDIRECT = True  # read when the client's middleware loads, on its first request
    https = {"HTTP_X_FORWARDED_PROTO": "https"}
    fresh = api_client.get("/people", **https)
    cached = api_client.get("/people", **https)
    assert fresh["Strict-Transport-Security"] == cached["Strict-Transport-Security"]
    assert fresh["X-Content-Type-Options"] == cached["X-Content-Type-Options"] == "nosniff"
    redirected = api_client.get("/people")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")


def test_a_write_is_seen_by_the_next_read_of_a_cached_passenger(api_client, editor_client, crowd):
    target = f"/people/{crowd[0].uuid}"
    assert api_client.get(target).json()["fare"] != 1.5
    editor_client.patch(target, {"fare": 1.5}, format="json")
    assert api_client.get(target).json()["fare"] == 1.5
    editor_client.delete(target)
    assert api_client.get(target).status_code == 404


@pytest.mark.slow
def test_the_response_cache_counts_what_its_entries_take_in_memory(api_client, passenger):
    import tracemalloc

    from passengers.middleware import CachedReadsMiddleware

    response = api_client.get(f"/people/{passenger.uuid}")  # a small entry: the overhead weighs most
    responses = CachedReadsMiddleware(lambda request: HttpResponse()).responses
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(2000):  # new objects each time, as every rendered response has
            headers = [(name.encode().decode(), value.encode().decode()) for name, value in response.items()]
            responses[number.to_bytes(32, "big")] = (bytes(bytearray(response.content)), headers)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 * taken <= responses.currsize <= 1.2 * taken, (responses.currsize, taken)


@override_settings(TITANIC_RESPONSE_CACHE_MB=0)
def test_the_response_cache_can_be_turned_off(crowd, django_assert_num_queries):
    from rest_framework.test import APIClient

    api_client = APIClient()  # the middleware reads its budget when the client's handler loads it
    api_client.get("/people")
    with django_assert_num_queries(1):  # the list itself: no dataset stamp is read
        api_client.get("/people")


# --- API documentation --------------------------------------------------------------------------------


def test_schema_validates_without_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_schema_documents_the_contract(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert {"/people", "/people/{uuid}", "/people/stats"} <= set(paths)
    assert set(paths["/people"]) >= {"get", "post"}
    assert set(paths["/people/{uuid}"]) >= {"get", "put", "patch", "delete"}
    assert set(paths["/people"]["post"]["responses"]) >= {"201", "400", "401", "403"}
    assert set(paths["/people/{uuid}"]["delete"]["responses"]) >= {"204", "404"}
    components = schema["components"]["schemas"]
    person = components["Passenger"]["properties"]
    assert person["survived"]["type"] == "boolean"
    assert components["PassengerClassEnum"]["enum"] == [1, 2, 3]
    assert components["SexEnum"]["enum"] == ["male", "female", "other"]
    listed = paths["/people"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    page = components[listed["$ref"].rsplit("/", 1)[1]]
    assert page["oneOf"][0]["type"] == "array"  # the contract's plain array unless ?limit= is sent
    assert person["fare"]["type"] == "number" and person["age"]["type"] == "number"
    assert person["uuid"]["readOnly"] is True
    assert "tokenAuth" in schema["components"]["securitySchemes"]


# --- input ranges and the character policy of names (docs/security.md) -----------------------------

FORBIDDEN_IN_NAMES = {
    "LF": "\n", "CR": "\r", "tab": "\t", "escape": "\x1b", "DEL": "\x7f", "NEL (C1)": "\x85",
    "line separator": "\u2028", "paragraph separator": "\u2029", "right-to-left override": "\u202e",
    "left-to-right embedding": "\u202a", "first strong isolate": "\u2068", "right-to-left mark": "\u200f",
    "Arabic letter mark": "\u061c",
}  # fmt: skip


@pytest.mark.parametrize("character", FORBIDDEN_IN_NAMES.values(), ids=FORBIDDEN_IN_NAMES.keys())
def test_a_name_with_a_control_or_bidirectional_character_is_refused(editor_client, person_data, character):
    for content_type in ("json", "multipart"):
        response = editor_client.post("/people", {**person_data, "name": f"Mr. A{character}B"}, format=content_type)
        assert response.status_code == 400
        assert "control characters" in body(response)["name"][0]
    assert not Passenger.objects.exists()


# A Persian name needs the zero-width non-joiner (U+200C), which is not a bidirectional control.
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
KEPT_NAMES = ["Mlle. Émilie Ã…", "Mr. 李雷", f"Mrs. {PERSIAN}", "Miss. O'Brien (née Ünal)"]


@pytest.mark.parametrize("name", KEPT_NAMES)
def test_names_in_any_script_are_kept(editor_client, person_data, name):
    response = editor_client.post("/people", {**person_data, "name": name}, format="json")
    assert response.status_code == 201, body(response)
    assert Passenger.objects.get().name == name


@pytest.mark.parametrize(("fare", "status"), [(10000, 201), (512.3292, 201), (10000.01, 400), (1e308, 400)])
def test_the_fare_is_at_most_10000(editor_client, person_data, fare, status):
    response = editor_client.post("/people", {**person_data, "fare": fare}, format="json")
    assert response.status_code == status, body(response)
    assert Passenger.objects.count() == (status == 201)


@pytest.mark.django_db
@pytest.mark.parametrize("changes", [{"name": "Mr. A\nB"}, {"name": "Mr. \u202eA"}, {"fare": 1e308}])
def test_the_database_refuses_what_the_validators_refuse(changes):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        PassengerFactory(**changes)
