"""The hand-written SQL of the hot paths (passengers.hot_queries), on SQLite and on PostgreSQL
(DATABASE_URL): what each query returns, and which ones PostgreSQL prepares."""

import uuid

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from passengers import hot_queries
from passengers.models import CONTRACT_FIELDS, DatasetVersion, Passenger
from passengers.tests.factories import PassengerFactory

pytestmark = pytest.mark.django_db


def stamp_row():
    return DatasetVersion.objects.get(pk=1).stamp


def as_uuid(stamp):
    """The stamp as a UUID: PostgreSQL returns one, SQLite its hex digits."""
    return uuid.UUID(str(stamp))


@pytest.fixture
def token(editor):
    return Token.objects.create(user=editor)


def test_current_stamp_is_the_stamp_row_and_none_without_it():
    first = hot_queries.current_stamp()
    assert as_uuid(first) == stamp_row()
    PassengerFactory()  # the trigger renews it
    assert as_uuid(hot_queries.current_stamp()) == stamp_row() != as_uuid(first)
    DatasetVersion.objects.all().delete()
    assert hot_queries.current_stamp() is None


def test_stamp_and_token_user_names_the_active_owner_of_a_known_token(editor, token):
    found = hot_queries.stamp_and_token_user(token.key)
    assert found is not None
    stamp, user = found
    assert as_uuid(stamp) == stamp_row()
    assert user is not None
    assert (user.pk, user.get_username(), user.is_active) == (editor.pk, "editor", True)


def test_stamp_and_token_user_has_no_user_for_an_unknown_token_or_an_inactive_owner(editor, token):
    stamp = hot_queries.current_stamp()
    assert hot_queries.stamp_and_token_user("not-a-token") == (stamp, None)
    editor.is_active = False
    editor.save()
    assert hot_queries.stamp_and_token_user(token.key) == (stamp, None)


def test_stamp_and_token_user_is_none_without_the_stamp_row(token):
    DatasetVersion.objects.all().delete()
    assert hot_queries.stamp_and_token_user(token.key) is None


def test_person_row_has_the_contract_fields_of_the_orm():
    passenger, _other = PassengerFactory.create_batch(2)
    row = hot_queries.person_row(str(passenger.uuid))
    assert row is not None
    assert row._asdict() == {field: getattr(passenger, field) for field in CONTRACT_FIELDS.values()}
    assert row == Passenger.objects.values_list(*CONTRACT_FIELDS.values()).get(pk=passenger.pk)


@pytest.mark.parametrize("key", [str(uuid.uuid4()), "not-a-uuid", "49dc24bd"])
def test_person_row_is_none_for_an_unknown_or_malformed_key(key):
    PassengerFactory()
    assert hot_queries.person_row(key) is None


def _executions_of_prepared_statements():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def test_the_stamp_queries_are_prepared_on_postgresql_and_the_person_row_is_not(token):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no prepared statements to see")
    (passenger,) = PassengerFactory.create_batch(1)
    before = _executions_of_prepared_statements()
    for _ in range(3):
        hot_queries.current_stamp()
        hot_queries.stamp_and_token_user(token.key)
        hot_queries.person_row(str(passenger.uuid))
    after = _executions_of_prepared_statements()
    executed = {statement: count - before.get(statement, 0) for statement, count in after.items()}
    token_sql = hot_queries._stamp_and_token_user_sql().replace("%s", "$1")  # as psycopg sends it
    assert {statement: count for statement, count in executed.items() if count} == {
        hot_queries._current_stamp_sql(): 3,
        token_sql: 3,
    }
