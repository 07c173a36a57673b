import os

# Test settings: debug off (as in production) with a fixed key and no HTTPS redirect, so the
# test client talks plain HTTP to the same middleware and storage the server uses.
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-secret")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("TITANIC_WRITE_THROTTLE_RATE", "10000/min")
