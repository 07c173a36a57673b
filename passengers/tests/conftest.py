from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from passengers.tests.factories import PassengerFactory
from tests.example import person_body

WRITE_PERMISSIONS = ["add_passenger", "change_passenger", "delete_passenger"]


@pytest.fixture
def api_client():
    """An anonymous API client that, like most real clients, sends no Accept header preference beyond JSON."""
    return APIClient()


@pytest.fixture
def token_client(db):
    """token_client(user): an API client authenticated as `user` with a DRF token of its own."""

    def authenticated_as(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return client

    return authenticated_as


def _user(username, permissions=()):
    user = User.objects.create_user(username=username, password="a-long-test-password")
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    return user


@pytest.fixture
def editor(db):
    """A user holding add/change/delete passenger."""
    return _user("editor", WRITE_PERMISSIONS)


@pytest.fixture
def reader(db):
    """An authenticated user without any passenger permission."""
    return _user("reader")


@pytest.fixture
def editor_client(token_client, editor):
    return token_client(editor)


@pytest.fixture
def reader_client(token_client, reader):
    return token_client(reader)


@pytest.fixture
def passenger(db):
    return PassengerFactory(
        name="Mr. Owen Harris Braund",
        survived=False,
        passenger_class=3,
        sex="male",
        age=22,
        siblings_or_spouses_aboard=1,
        fare=7.25,
    )


@pytest.fixture
def person_data():
    """Valid PersonData: the contract's example."""
    return person_body()


@pytest.fixture
def loaded_passengers(db):
    """The real dataset (fixtures/titanic.csv), loaded as `manage.py loadcsv` loads it."""
    call_command("loadcsv", stdout=StringIO())
