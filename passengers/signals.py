import logging

from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from passengers.models import DatasetVersion, Passenger

logger = logging.getLogger("passengers.api")


@receiver(post_save, sender=Passenger)
@receiver(post_delete, sender=Passenger)
def bump_dataset_version(**kwargs):
    DatasetVersion.bump()


@receiver(user_login_failed)
def log_login_failure(sender, credentials, request=None, **kwargs):
    logger.warning(
        "login failed for %s",
        credentials.get("username"),
        extra={"client": request.META.get("REMOTE_ADDR") if request else None},
    )
