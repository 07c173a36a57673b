"""The service names itself, with its version, on its pages: the browsable API, the admin, Swagger UI's tags."""

import re

import pytest
from django.conf import settings

NAME = f"Titanic API {settings.TITANIC_VERSION}"
LOGIN = "/api-auth/login/"

pytestmark = pytest.mark.django_db


def _title(html):
    found = re.search(r"<title>\s*(.*?)\s*</title>", html, flags=re.DOTALL)
    assert found, "no title"
    return found.group(1)


def test_the_browsable_api_names_the_service_in_its_title_and_navbar(client):
    html = client.get("/people", HTTP_ACCEPT="text/html").content.decode()
    assert _title(html) == f"Passenger List \N{EN DASH} {NAME}"
    assert re.search(rf'<a class="navbar-brand" href="/">{re.escape(NAME)}</a>', html)
    assert "Django REST framework" not in html


def test_the_admin_names_the_service(client, admin_client):
    login = client.get(f"/{settings.ADMIN_URL}login/").content.decode()
    assert _title(login) == f"Log in | {NAME}"
    assert f">{NAME}</a>" in login  # the header
    index = admin_client.get(f"/{settings.ADMIN_URL}").content.decode()
    assert _title(index) == f"Titanic API administration | {NAME}"
    assert "Django administration" not in login + index


def test_swagger_ui_lists_the_root_under_a_named_tag(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["paths"]["/"]["get"]["tags"] == ["service"]


def test_the_browsable_apis_login_names_the_service(client, django_user_model):
    html = client.get(LOGIN).content.decode()
    assert _title(html) == f"Log in \N{EN DASH} {NAME}"
    assert f">{NAME}</h3>" in html
    assert "Django REST framework" not in html
    password = "a-long-password"  # pragma: allowlist secret
    django_user_model.objects.create_user("reader", password=password)
    response = client.post(LOGIN, {"username": "reader", "password": password, "next": "/people"})
    assert (response.status_code, response["Location"]) == (302, "/people")
