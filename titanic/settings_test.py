"""Settings for the test suite (pytest): the production settings with a fast password hasher.

The default hasher (PBKDF2) is slow on purpose; tests create users by the hundred.
"""

from titanic.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
