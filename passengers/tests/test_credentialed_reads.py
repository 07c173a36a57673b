"""Reads with a DRF token are answered from the same cached responses as anonymous ones, once the
token is checked: in the same single query as the dataset stamp, on every request."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from passengers.tests.factories import PassengerFactory

PATHS = ["/people", "/people/{uuid}", "/people/stats?sex=female"]


@pytest.fixture
def token(editor):
    return Token.objects.get_or_create(user=editor)[0]


@pytest.fixture
def paths(db):
    passengers = PassengerFactory.create_batch(2)
    return [path.format(uuid=passengers[0].uuid) for path in PATHS]


def test_a_token_read_is_answered_from_the_cache_with_one_query(api_client, token, paths, django_assert_num_queries):
    """Anonymous and credentialed reads share the entries (each test client has its own middleware)."""
    for path in paths:
        anonymous = api_client.get(path)
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        with django_assert_num_queries(1) as queries:
            credentialed = api_client.get(path)
        assert "authtoken_token" in queries.captured_queries[0]["sql"]
        assert (credentialed.status_code, credentialed.content) == (200, anonymous.content)
        assert credentialed["ETag"] == anonymous["ETag"]
        assert api_client.get(path, HTTP_IF_NONE_MATCH=anonymous["ETag"]).status_code == 304
        api_client.credentials()


def test_a_revoked_token_is_refused_at_once(api_client, editor_client, token, paths):
    for path in paths:
        assert editor_client.get(path).status_code == 200
    token.delete()
    for path in paths:
        assert editor_client.get(path).status_code == 401
        assert api_client.get(path).status_code == 200


def test_a_deactivated_user_is_refused_at_once(editor_client, editor, token, paths):
    for path in paths:
        assert editor_client.get(path).status_code == 200
    editor.is_active = False
    editor.save()
    for path in paths:
        response = editor_client.get(path)
        assert response.status_code == 401, path
        assert "inactive" in response.json()["detail"]


def test_a_user_whose_permissions_changed_is_judged_by_the_new_ones(editor_client, editor, token, paths, person_data):
    for path in paths:
        assert editor_client.get(path).status_code == 200
    editor.user_permissions.remove(Permission.objects.get(codename="add_passenger"))
    assert editor_client.post("/people", person_data, format="json").status_code == 403
    assert editor_client.get(paths[0]).status_code == 200  # reads are public: still served
    editor.user_permissions.add(Permission.objects.get(codename="add_passenger"))
    assert editor_client.post("/people", person_data, format="json").status_code == 201


def test_a_write_is_seen_by_the_next_credentialed_read(editor_client, paths, person_data):
    assert len(editor_client.get(paths[0]).json()) == 2  # cached
    created = editor_client.post("/people", person_data, format="json").json()
    assert created in editor_client.get(paths[0]).json()


def test_the_request_log_names_the_reader_of_a_cached_answer(editor_client, paths, caplog):
    editor_client.get(paths[0])
    caplog.clear()
    with caplog.at_level("INFO", logger="titanic.request"):
        editor_client.get(paths[0])
    assert [record.user for record in caplog.records if record.name == "titanic.request"] == ["editor"]


def test_the_stamp_and_token_query_is_prepared_once_on_postgresql(editor_client, token, paths):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no prepared statements to see")

    def executions_of_the_token_query():
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
            return sum(executions for statement, executions in cursor.fetchall() if "authtoken_token" in statement)

    before = executions_of_the_token_query()
    for _ in range(3):
        assert editor_client.get(paths[0]).status_code == 200
    assert executions_of_the_token_query() == before + 3
