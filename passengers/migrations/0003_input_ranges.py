"""Bounds on the fare and a character policy for names (passengers.models), held by the database too.

On a database holding a row that breaks them, adding the constraints fails and nothing changes:
docs/security.md says how to find such rows. SQLite adds a constraint by rebuilding the table, which
drops its triggers: the stamp's (migration 0002) are created again after it, both ways.
"""

import importlib

import django.core.validators
from django.db import migrations, models

stamp_triggers = importlib.import_module("passengers.migrations.0002_dataset_stamp_triggers")
UNPRINTABLE = r"[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"  # titanic.text, as of now
NAME_MESSAGE = (
    "Must contain no control characters (such as CR, LF or tab), no U+2028 or U+2029 and no bidirectional "
    "formatting characters."
)


def recreate_the_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in stamp_triggers.SQLITE_REVERSE + stamp_triggers.SQLITE:
            schema_editor.execute(statement.replace("DROP TRIGGER", "DROP TRIGGER IF EXISTS"))


class Migration(migrations.Migration):
    dependencies = [("passengers", "0002_dataset_stamp_triggers")]

    operations = [
        # Last when migrating back, after the table is rebuilt without the constraints.
        migrations.RunPython(migrations.RunPython.noop, recreate_the_sqlite_triggers),
        migrations.AlterField(
            model_name="passenger",
            name="fare",
            field=models.FloatField(
                validators=[
                    django.core.validators.MinValueValidator(0),
                    django.core.validators.MaxValueValidator(10000),
                ]
            ),
        ),
        migrations.AlterField(
            model_name="passenger",
            name="name",
            field=models.CharField(
                max_length=200,
                validators=[
                    django.core.validators.RegexValidator(UNPRINTABLE, inverse_match=True, message=NAME_MESSAGE)
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="passenger",
            constraint=models.CheckConstraint(condition=models.Q(fare__lte=10000), name="passenger_fare_at_most_10000"),
        ),
        migrations.AddConstraint(
            model_name="passenger",
            constraint=models.CheckConstraint(
                condition=~models.Q(name__regex=UNPRINTABLE), name="passenger_name_printable"
            ),
        ),
        migrations.RunPython(recreate_the_sqlite_triggers, migrations.RunPython.noop),
    ]
