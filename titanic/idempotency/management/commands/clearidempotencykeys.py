from django.core.management.base import BaseCommand

from titanic.idempotency.models import LIFETIME, IdempotencyKey


class Command(BaseCommand):
    help = f"Delete the Idempotency-Keys older than {LIFETIME} (run hourly: the overlays' CronJob)."

    def handle(self, *args, **options):
        deleted, _ = IdempotencyKey.objects.expired().delete()
        self.stdout.write(f"Deleted {deleted} expired idempotency key(s).")
