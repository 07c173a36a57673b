from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F, Max

from passengers.hot_queries import current_stamp
from passengers.models import Passenger


class Command(BaseCommand):
    help = (
        "Check a restored database before the service is pointed at it (both restore drills run it): "
        "schema at this release's latest migration, passengers readable, the dataset stamp present and "
        "renewed by a change (tried in a transaction that is rolled back). Exits non-zero naming the "
        "first check that fails; changes nothing."
    )

    def handle(self, **options):
        loader = MigrationExecutor(connection).loader
        leaves = loader.graph.leaf_nodes()
        # Every migration of the release, in order; also one missing below an applied one (which
        # `migrate --check` would not see: it plans only towards the leaves).
        release = dict.fromkeys(key for leaf in leaves for key in loader.graph.forwards_plan(leaf))
        pending = [key for key in release if key not in loader.applied_migrations]
        if pending:
            app, name = pending[0]
            raise CommandError(f"{len(pending)} migration(s) not applied (first {app}.{name})")
        latest = next(f"{app}.{name}" for app, name in leaves if app == Passenger._meta.app_label)

        passengers = Passenger.objects.count()
        if not passengers:
            raise CommandError("no passengers: the table is empty")
        newest = Passenger.objects.aggregate(newest=Max("updated_at"))["newest"]

        # The response cache keys on the stamp: it must exist, and a change must renew it (the
        # trigger of migration 0002), or cached answers would outlive the writes made from now on.
        stamp = current_stamp()
        if stamp is None:
            raise CommandError("no dataset stamp row (manage.py migrate restores it)")
        with transaction.atomic():
            one = Passenger.objects.values_list("pk", flat=True)[:1].get()
            Passenger.objects.filter(pk=one).update(name=F("name"))
            renewed = current_stamp() != stamp
            transaction.set_rollback(True)
        if not renewed:
            raise CommandError("a change to the passengers did not renew the dataset stamp (its trigger is missing)")

        self.stdout.write(
            f"drillcheck: passed: schema at {latest}, no migration pending; {passengers} passengers, "
            f"newest change {newest.isoformat()}; dataset stamp {stamp}, renewed by a change (rolled back)"
        )
