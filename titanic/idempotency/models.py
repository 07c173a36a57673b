from datetime import timedelta

from django.db import models
from django.utils import timezone

# How long a key is remembered (what the README and the OpenAPI document promise); then the same
# key starts a new request, and `manage.py clearidempotencykeys` deletes it.
LIFETIME = timedelta(hours=24)
KEY_MAX_LENGTH = 255  # characters of the key itself, without the quotes of its sf-string


class IdempotencyKeyQuerySet(models.QuerySet):
    def expired(self):
        return self.filter(created_at__lte=timezone.now() - LIFETIME)


class IdempotencyKey(models.Model):
    """A client's key, the fingerprint of the request that first came with it, and the answer it got.

    Written in the same transaction as that request's write (titanic.idempotency.views): a committed
    write always has its key, a rolled-back one never does.
    """

    client = models.CharField(max_length=40, help_text='"user:<id>", or "anonymous" for every anonymous writer')
    key = models.CharField(max_length=KEY_MAX_LENGTH)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the method, path, client and body")
    status = models.PositiveSmallIntegerField()
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_once_per_client")]

    def __str__(self):
        return f"{self.client} {self.key!r}: {self.status}"

    @property
    def expired(self):
        return self.created_at <= timezone.now() - LIFETIME
