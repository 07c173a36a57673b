"""The dataset stamp: a random UUID that the database renews itself whenever the passengers change.

Triggers, not Django signals, so that nothing can change the passengers without renewing it:
QuerySet.update(), bulk_create, raw SQL, psql, TRUNCATE, data migrations. PostgreSQL runs one
statement-level trigger per changing statement; SQLite has only row-level triggers (and no
TRUNCATE: a DELETE without WHERE fires them per row once triggers exist).
"""

import uuid

from django.db import migrations, models

POSTGRESQL = (
    """
    CREATE FUNCTION passengers_renew_dataset_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE passengers_datasetversion SET stamp = gen_random_uuid() WHERE id = 1;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER passengers_passenger_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON passengers_passenger
        FOR EACH STATEMENT EXECUTE FUNCTION passengers_renew_dataset_stamp()
    """,
)
POSTGRESQL_REVERSE = (
    "DROP TRIGGER passengers_passenger_changed ON passengers_passenger",
    "DROP FUNCTION passengers_renew_dataset_stamp()",
)
SQLITE = tuple(
    f"""
    CREATE TRIGGER passengers_passenger_{event.lower()}d AFTER {event} ON passengers_passenger
    BEGIN
        UPDATE passengers_datasetversion SET stamp = lower(hex(randomblob(16))) WHERE id = 1;
    END
    """
    for event in ("INSERT", "UPDATE", "DELETE")
)
SQLITE_REVERSE = tuple(f"DROP TRIGGER passengers_passenger_{event}d" for event in ("insert", "update", "delete"))


def _run(statements):
    def run(apps, schema_editor):
        for statement in statements[schema_editor.connection.vendor]:
            schema_editor.execute(statement)

    return run


def create_the_stamp_row(apps, schema_editor):
    apps.get_model("passengers", "DatasetVersion").objects.update_or_create(pk=1, defaults={"stamp": uuid.uuid4()})


class Migration(migrations.Migration):
    dependencies = [("passengers", "0001_initial")]

    operations = [
        migrations.RemoveField(model_name="datasetversion", name="version"),
        migrations.AddField(model_name="datasetversion", name="stamp", field=models.UUIDField(default=uuid.uuid4)),
        migrations.RunPython(create_the_stamp_row, migrations.RunPython.noop),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
