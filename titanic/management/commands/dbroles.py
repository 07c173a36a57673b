import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from titanic.postgresql.roles import Role, set_up


class Command(BaseCommand):
    help = (
        "Create the database users of the service (DATABASE_APP_USER, default titanic_app: rows only; "
        "DATABASE_MIGRATOR_USER, default titanic_migrator: owns the schema) and give each what it needs. "
        "Run it connected as the administrator (RDS: the master user); idempotent. Optional "
        "DATABASE_APP_PASSWORD / DATABASE_MIGRATOR_PASSWORD set passwords, for databases without IAM."
    )

    def handle(self, *args, **options):
        app = Role(os.environ.get("DATABASE_APP_USER", "titanic_app"), os.environ.get("DATABASE_APP_PASSWORD"))
        migrator = Role(
            os.environ.get("DATABASE_MIGRATOR_USER", "titanic_migrator"), os.environ.get("DATABASE_MIGRATOR_PASSWORD")
        )
        if app.name == migrator.name:
            raise CommandError("the app and the migrator must be different users")
        if connection.vendor != "postgresql":
            raise CommandError(f"dbroles needs PostgreSQL; DATABASE_URL is {connection.vendor}")
        for line in set_up(app=app, migrator=migrator):
            self.stdout.write(line)
