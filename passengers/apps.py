import logging

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


class PassengersConfig(AppConfig):
    name = "passengers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from passengers import signals

        post_migrate.connect(signals.restore_the_dataset_stamp_row, sender=self)

        if settings.TITANIC_ANONYMOUS_WRITES:
            logger.warning(
                "TITANIC_ANONYMOUS_WRITES is on: anyone who can reach this service can create, "
                "change and delete passengers. Use it only on a trusted network."
            )
