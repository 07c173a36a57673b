import logging

from django.apps import apps as global_apps
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

logger = logging.getLogger("titanic.api")


@receiver(user_login_failed)
def log_login_failure(sender, credentials, request=None, **kwargs):
    logger.warning(
        "login failed for %s",
        credentials.get("username"),
        extra={"client": request.META.get("REMOTE_ADDR") if request else None},
    )


def restore_the_dataset_stamp_row(using, apps=global_apps, **kwargs):
    """post_migrate: migration 0002 creates the stamp row, but `manage.py flush` (and pytest-django after
    each transactional test) empties every table and then sends post_migrate, as it does for content types."""
    try:
        model = apps.get_model("passengers", "DatasetVersion")
    except LookupError:  # migrated back to zero
        return
    model.objects.using(using).get_or_create(pk=1)
