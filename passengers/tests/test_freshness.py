"""The dataset stamp is renewed by the database itself, so no change to the passengers escapes it.

Runs on SQLite and on PostgreSQL (the Makefile runs this app's tests on both). The same checks
against a real multi-worker gunicorn, psql, `manage.py shell` and a dump restored in place are in
tests/test_freshness.py.
"""

import uuid

import pytest
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from passengers.hot_queries import current_stamp
from passengers.middleware import CachedReadsMiddleware
from passengers.models import DatasetVersion, Passenger
from passengers.serializers import person
from passengers.tests.factories import PassengerFactory

TABLE = Passenger._meta.db_table


@pytest.fixture
def passengers(db):
    return PassengerFactory.create_batch(3)


def execute(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def empty_the_table():
    execute(f"TRUNCATE {TABLE}" if connection.vendor == "postgresql" else f"DELETE FROM {TABLE}")


def raw_insert():
    execute(
        f"INSERT INTO {TABLE} (uuid, survived, passenger_class, name, sex, age, siblings_or_spouses_aboard,"
        " parents_or_children_aboard, fare, created_at, updated_at)"
        " VALUES (%s, %s, 1, 'Mr. Raw Insert', 'male', 30, 0, 0, 1.5, %s, %s)",
        [Passenger._meta.pk.get_db_prep_value(uuid.uuid4(), connection), True, "2026-01-01", "2026-01-01"],
    )


CHANGES = {
    "raw UPDATE": lambda: execute(f"UPDATE {TABLE} SET name = 'Mr. Changed In SQL'"),
    "raw INSERT": raw_insert,
    "raw DELETE": lambda: execute(f"DELETE FROM {TABLE} WHERE name LIKE 'Mr.%%'"),
    "TRUNCATE (DELETE on SQLite)": empty_the_table,
    "QuerySet.update()": lambda: Passenger.objects.update(fare=1.25),
    "QuerySet.delete()": lambda: Passenger.objects.all().delete(),
    "bulk_create": lambda: Passenger.objects.bulk_create(PassengerFactory.build_batch(2)),
}


def test_the_stamp_row_exists_from_the_migration_on(db):
    assert isinstance(DatasetVersion.objects.get(pk=1).stamp, uuid.UUID)


@pytest.mark.parametrize("change", CHANGES)
def test_every_kind_of_change_renews_the_stamp_and_the_next_read_sees_it(api_client, passengers, change):
    detail = f"/people/{passengers[0].uuid}"
    stamp = current_stamp()
    cached = (api_client.get("/people").content, api_client.get(detail).content)
    assert (api_client.get("/people").content, api_client.get(detail).content) == cached  # now answered from the cache

    CHANGES[change]()

    assert current_stamp() != stamp
    assert api_client.get("/people").json() == [person(row) for row in Passenger.objects.all()]
    row = Passenger.objects.filter(uuid=passengers[0].uuid).values_list("name", flat=True).first()
    response = api_client.get(detail)
    assert (response.status_code, row and response.json()["name"]) == ((200, row) if row else (404, None))


def test_a_rolled_back_change_leaves_the_stamp_as_it_was(passengers):
    stamp = current_stamp()
    with transaction.atomic():
        Passenger.objects.update(fare=3.5)
        assert current_stamp() != stamp  # renewed in the same transaction as the change
        transaction.set_rollback(True)
    assert current_stamp() == stamp


def test_stamps_are_not_reused(passengers):
    stamps = {current_stamp()}
    for fare in range(20):
        Passenger.objects.update(fare=fare)
        stamps.add(current_stamp())
    assert len(stamps) == 21


@pytest.mark.parametrize("change_while_rendering", [False, True])
def test_a_response_rendered_while_the_data_changed_is_not_kept(passengers, change_while_rendering):
    renders = []

    def render(request):
        renders.append(request)
        if change_while_rendering:
            Passenger.objects.update(fare=len(renders))
        return HttpResponse(b"[]", content_type="application/json", headers={"ETag": f'"{len(renders)}"'})

    middleware = CachedReadsMiddleware(render)
    for _ in range(2):
        middleware(RequestFactory().get("/people"))
    assert len(renders) == (2 if change_while_rendering else 1)


@pytest.mark.django_db(transaction=True)
def test_the_stamp_row_comes_back_after_a_flush(passengers):
    from django.core.management import call_command

    call_command("flush", "--noinput")
    assert Passenger.objects.count() == 0
    assert DatasetVersion.objects.filter(pk=1).exists()


@pytest.mark.parametrize("reader", ["anonymous", "token"])
def test_without_the_stamp_row_reads_are_rendered_every_time_not_refused(reader, api_client, editor_client, passengers):
    reads = editor_client if reader == "token" else api_client
    path = f"/people/{passengers[0].uuid}"
    DatasetVersion.objects.all().delete()
    assert reads.get(path).json()["name"] == passengers[0].name
    Passenger.objects.filter(pk=passengers[0].pk).update(name="Mr. Renamed")  # the trigger finds no row to renew
    assert reads.get(path).json()["name"] == "Mr. Renamed"  # nothing was kept under a missing stamp
