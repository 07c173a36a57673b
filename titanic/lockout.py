"""The login lockout's rules beyond django-axes' settings (settings.AXES_*; docs/operations.md, "Login lockout"):
what a successful login clears, over-long usernames, and a log line for every failure."""

import logging

from axes.utils import reset
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import BadRequest
from django.dispatch import receiver

logger = logging.getLogger("titanic.api")
User = get_user_model()
USERNAME_MAX_LENGTH: int = getattr(User._meta.get_field(User.USERNAME_FIELD), "max_length", None) or 150


class UsernameLengthBackend:
    """First of AUTHENTICATION_BACKENDS: a username longer than any account's is refused (400) before
    the lockout is asked or a password hashed, and counted as a failed login from that address.

    Django's login form does not enforce the field's max_length; ModelBackend would then hash the
    password (to keep its timing) and django-axes fail to store the name: a 500, with nothing counted.
    It checks only: no get_user(), so no session is ever tied to it (as django-axes' own backend).
    """

    def authenticate(self, request, username=None, **credentials):
        if username is None or len(username) <= USERNAME_MAX_LENGTH:
            return None
        user_login_failed.send(__name__, credentials={"username": username[:USERNAME_MAX_LENGTH]}, request=request)
        raise BadRequest(f"A username has at most {USERNAME_MAX_LENGTH} characters.")


@receiver(user_logged_in)
def clear_the_failures_of_this_username(sender, request, user, **kwargs):
    """A successful login clears the failures recorded against its username, from any address, and
    nothing else: the address's failures against other usernames still count towards its limit."""
    if settings.AXES_ENABLED:
        reset(username=user.get_username())


@receiver(user_login_failed)
def log_login_failure(sender, credentials, request=None, **kwargs):
    logger.warning(
        "login failed for %s",
        credentials.get("username"),
        extra={"client": request.META.get("REMOTE_ADDR") if request else None},
    )
