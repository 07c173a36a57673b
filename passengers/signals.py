from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from passengers.models import DatasetVersion, Passenger


@receiver(post_save, sender=Passenger)
@receiver(post_delete, sender=Passenger)
def bump_dataset_version(**kwargs):
    DatasetVersion.bump()
