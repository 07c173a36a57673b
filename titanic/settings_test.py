"""Settings for the test suite (pytest) and mypy's Django plugin: the production settings, with a
fixed key unless one is given and a fast password hasher (PBKDF2 is slow on purpose; tests create
users by the hundred)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-secret")

from titanic.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
