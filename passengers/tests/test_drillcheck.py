"""`manage.py drillcheck`: what both restore drills check on a restored database (tests/drill.py,
scripts/dr-drill). Each broken case is made inside the test's transaction and rolled back with it."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from passengers.hot_queries import current_stamp
from passengers.models import DatasetVersion, Passenger

pytestmark = pytest.mark.django_db


def drillcheck():
    out = StringIO()
    call_command("drillcheck", stdout=out)
    return out.getvalue()


def test_passes_on_a_migrated_loaded_database_and_changes_nothing(passenger):
    stamp = current_stamp()
    output = drillcheck()
    latest = MigrationRecorder.Migration.objects.filter(app="passengers").latest("id").name
    assert output.startswith(f"drillcheck: passed: schema at passengers.{latest}, no migration pending")
    assert "1 passengers" in output and f"dataset stamp {stamp}, renewed by a change" in output
    assert current_stamp() == stamp, "the trial change was not rolled back"
    assert Passenger.objects.get().updated_at == passenger.updated_at


def test_a_schema_behind_the_release_fails(passenger):
    MigrationRecorder.Migration.objects.filter(app="passengers", name="0002_dataset_stamp_triggers").delete()
    with pytest.raises(
        CommandError, match=r"1 migration\(s\) not applied \(first passengers.0002_dataset_stamp_triggers\)"
    ):
        drillcheck()


def test_an_empty_passenger_table_fails(db):
    with pytest.raises(CommandError, match="no passengers"):
        drillcheck()


def test_a_missing_stamp_row_fails(passenger):
    DatasetVersion.objects.all().delete()
    with pytest.raises(CommandError, match="no dataset stamp row"):
        drillcheck()


def test_a_stamp_that_changes_do_not_renew_fails(passenger):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE passengers_passenger DISABLE TRIGGER passengers_passenger_changed")
        else:
            cursor.execute("DROP TRIGGER passengers_passenger_updated")
    with pytest.raises(CommandError, match="did not renew the dataset stamp"):
        drillcheck()
