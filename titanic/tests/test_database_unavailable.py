"""A database error answers 503 with Retry-After on every kind of view, in-process (tests/test_faults.py:
the same against a real gunicorn and a real PostgreSQL outage)."""

import pytest
from django.db import OperationalError, connection
from django.test import Client

from titanic.views import RETRY_AFTER_SECONDS

SESSION = {"HTTP_COOKIE": "sessionid=notarealsessionnotarealsession00"}
TOKEN = {"HTTP_AUTHORIZATION": "Token 0123456789abcdef0123456789abcdef01234567"}


def failing(error):
    def wrapper(execute, sql, params, many, context):
        raise error

    return wrapper


@pytest.fixture
def client():
    return Client(raise_request_exception=False, headers={"x-forwarded-proto": "https"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("get", "/people", {}),
        ("get", "/people/stats", {}),
        ("get", "/people/49dc24bd-906d-4497-bcfc-ecc8c309ecfc", {}),
        ("post", "/people", TOKEN),  # token authentication needs the database
        ("get", "/people", TOKEN),
        ("get", "/people", SESSION),  # session authentication too
        ("get", "/admin/", SESSION),
        ("get", "/admin/passengers/passenger/", SESSION),
    ],
)
def test_operational_error_is_503_with_retry_after_for_any_view(client, method, path, extra):
    with connection.execute_wrapper(failing(OperationalError("connection refused"))):
        response = getattr(client, method)(path, content_type="application/json", **extra)
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {"detail": "The database is unavailable; try again shortly."}


@pytest.mark.django_db
def test_other_errors_stay_500_without_retry_after(client):
    with connection.execute_wrapper(failing(ValueError("a bug"))):
        response = client.get("/people/stats")
    assert response.status_code == 500
    assert not response.has_header("Retry-After")
    assert response.json() == {"detail": "Internal server error."}


@pytest.mark.django_db
def test_views_without_the_database_still_answer(client):
    with connection.execute_wrapper(failing(OperationalError("connection refused"))):
        assert client.get("/").status_code == 200
        assert client.get("/health").status_code == 200
