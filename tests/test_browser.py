"""A real browser against a running server: the browsable API, Swagger UI, Redoc and the admin.

Headless Chromium from Debian (/usr/bin/chromium; `make system-packages` installs it), driven by
Playwright's Python API; Playwright never downloads a browser here. Screenshots of every page
go to pytest's temporary directory (the path is printed) so a person can look at what rendered.
"""

from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from playwright.sync_api import expect, sync_playwright

from passengers.tests.factories import PassengerFactory

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "a-long-test-password"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-packages`")
    # Playwright's sync API keeps an asyncio loop in this thread, so Django would refuse the
    # tests' own database calls (and the test database's flush) without this.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, record_testsuite_property):
    directory = tmp_path_factory.mktemp("screenshots")
    record_testsuite_property("screenshots", str(directory))
    return directory


@pytest.fixture(scope="module")
def server(live_server):
    """pytest-django's live server, serving static files as production does: WhiteNoise, from the
    collected STATIC_ROOT. (Its default static handler looks names up in the apps' static folders,
    where the manifest's hashed names do not exist, so every asset would be a 404.)"""
    if not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
        pytest.fail("static files are not collected: run `make static`")
    httpd = live_server.thread.httpd
    static_handler = httpd.get_app()
    httpd.set_app(static_handler.application)
    yield live_server
    httpd.set_app(static_handler)


@pytest.fixture
def page(browser, server):
    """A fresh page with no internet: requests to any other host are recorded and refused."""
    local = urlsplit(server.url).netloc
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda route: route.continue_() if is_local(route.request.url, local) else route.abort())
    # Every Content-Security-Policy violation, as (directive, what was blocked), read by csp_violations().
    context.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.cspViolations.push([e.effectiveDirective, e.blockedURI]));"
    )
    page = context.new_page()
    page.requests, page.failures, page.errors, page.blocked_by_csp = [], [], [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("requestfailed", lambda request: request.failure == "csp" and page.blocked_by_csp.append(request.url))
    page.on(
        "response", lambda response: response.status < 400 or page.failures.append(f"{response.status} {response.url}")
    )
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.set_default_timeout(15_000)
    yield page
    context.close()


def is_local(url, local):
    parts = urlsplit(url)
    return parts.scheme not in ("http", "https") or parts.netloc == local  # data: and blob: never leave


def outside_requests(page, live_server):
    """What the page fetched from anywhere but the server under test (CDNs, fonts, trackers).

    A request the page's Content-Security-Policy blocked never left the browser, so it does not count.
    """
    assert page.requests
    page.wait_for_load_state("networkidle")
    local = urlsplit(live_server.url).netloc
    return [url for url in page.requests if not is_local(url, local) and url not in page.blocked_by_csp]


def csp_violations(page):
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.cspViolations")


def assert_all_served_locally(page, live_server):
    """Every asset came from the server under test, none failed (a 404 stylesheet), no script broke, and
    the Content-Security-Policy had nothing to block."""
    assert outside_requests(page, live_server) == []
    assert page.failures == []
    assert page.errors == []
    assert csp_violations(page) == [], page.url


@pytest.fixture
def few_passengers(transactional_db):
    PassengerFactory(name="Mr. Owen Harris Braund", passenger_class=3, sex="male", age=22, fare=7.25)
    PassengerFactory(name="Miss. Laina Heikkinen", passenger_class=3, sex="female", age=26, fare=7.925)


def test_the_browsable_api_renders_the_passengers(page, live_server, few_passengers, screenshots):
    response = page.goto("/people")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    expect(page).to_have_title(f"Passenger List \u2013 {settings.TITANIC_SERVICE_NAME}")
    expect(page.locator(".page-header h1")).to_have_text("Passenger List")
    expect(page.locator(".response-info")).to_contain_text('"name": "Mr. Owen Harris Braund"')
    expect(page.locator(".response-info")).to_contain_text('"fare": 7.925')
    page.screenshot(path=screenshots / "people.png", full_page=False)
    assert_all_served_locally(page, live_server)


def test_the_browsable_api_pages_the_real_dataset(page, live_server, transactional_db, screenshots):
    call_command("loadcsv", stdout=StringIO())

    page.goto("/people?limit=3&ordering=name")

    expect(page.locator(".response-info")).to_contain_text('"count": 887')
    expect(page.locator(".response-info")).to_contain_text('"name": "Capt. Edward Gifford Crosby"')
    page.screenshot(path=screenshots / "people-page.png")
    assert_all_served_locally(page, live_server)


def test_swagger_ui_renders_the_people_operations_offline(page, live_server, screenshots):
    response = page.goto("/api/docs/")

    assert response.status == 200
    operations = page.locator(".swagger-ui .opblock .opblock-summary-path")
    expect(operations.first).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Titanic API")
    paths = {text.replace("\u200b", "") for text in operations.all_inner_texts()}
    assert {"/people", "/people/{uuid}", "/people/stats"} <= paths
    methods = {text.strip() for text in page.locator(".swagger-ui .opblock .opblock-summary-method").all_inner_texts()}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    page.screenshot(path=screenshots / "swagger.png", full_page=True)
    assert_all_served_locally(page, live_server)
    assert any(url.endswith("/api/schema/") for url in page.requests)  # the schema came from us too


def test_redoc_renders_offline(page, live_server, screenshots):
    response = page.goto("/api/redoc/")

    assert response.status == 200
    expect(page.locator("h1").first).to_contain_text("Titanic API")
    expect(page.get_by_role("heading", name="List passengers")).to_be_visible()
    expect(page.get_by_role("heading", name="Survival statistics")).to_be_visible()
    page.screenshot(path=screenshots / "redoc.png")
    assert page.failures == []
    assert page.errors == []


def test_redoc_asks_no_outside_host(page, live_server):
    response = page.goto("/api/redoc/")
    assert "img-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="List passengers")).to_be_visible()
    assert outside_requests(page, live_server) == []  # the bundle's remote logo is blocked by the CSP
    # That logo is all the policy blocks: no script, style or worker of the page itself.
    assert {directive for directive, _ in csp_violations(page)} <= {"img-src"}
    assert all(blocked.startswith("https://") for _, blocked in csp_violations(page))


def test_the_browsable_api_login_and_a_write_from_the_page(page, live_server, django_user_model, screenshots):
    """The session login and the HTML form's POST, which run DRF's scripts, under the policy."""
    user = django_user_model.objects.create_user("clerk", password=ADMIN_PASSWORD)
    user.user_permissions.set(Permission.objects.filter(codename="add_passenger"))
    page.goto("/api-auth/login/?next=/people")
    page.fill("#id_username", "clerk")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("#submit-id-submit")
    expect(page.locator(".page-header h1")).to_have_text("Passenger List")
    page.locator("a[name=html-tab]").click()
    form = page.locator("#post-object-form")
    form.locator("[name=name]").fill("Miss. Csp Test")
    form.locator("[name=sex]").select_option("female")
    form.locator("[name=age]").fill("30")
    form.locator("[name=siblingsOrSpousesAboard]").fill("0")
    form.locator("[name=parentsOrChildrenAboard]").fill("0")
    form.locator("[name=fare]").fill("7.25")
    form.locator("[name=passengerClass]").select_option("3")
    form.get_by_role("button", name="POST").click()
    expect(page.locator(".response-info")).to_contain_text("HTTP 201 Created")
    page.screenshot(path=screenshots / "people-created.png")
    assert_all_served_locally(page, live_server)
    page.click(".navbar .dropdown-toggle")
    page.click("#logout")
    expect(page.locator(".navbar")).to_contain_text("Log in")
    assert_all_served_locally(page, live_server)


def test_the_admin_login_page_and_logging_in(page, live_server, django_user_model, screenshots):
    django_user_model.objects.create_superuser("boss", "boss@example.com", ADMIN_PASSWORD)

    response = page.goto("/admin/")

    assert response.status == 200
    assert urlsplit(page.url).path == "/admin/login/"
    form = page.locator("#login-form")
    expect(form.locator("input[name=username]")).to_be_visible()
    expect(form.locator("input[name=password]")).to_be_visible()
    page.screenshot(path=screenshots / "admin-login.png")

    form.locator("input[name=username]").fill("boss")
    form.locator("input[name=password]").fill(ADMIN_PASSWORD)
    form.locator("input[type=submit]").click()

    expect(page.locator("#site-name")).to_be_visible()
    assert urlsplit(page.url).path == "/admin/"
    expect(page.locator("#content h1")).to_have_text("Titanic API administration")
    expect(page.locator("#content-main a[href$='/passengers/passenger/']").first).to_be_visible()
    page.screenshot(path=screenshots / "admin-index.png")
    assert_all_served_locally(page, live_server)


def test_a_wrong_password_stays_on_the_login_page(page, live_server, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", ADMIN_PASSWORD)
    page.goto("/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "not-the-password")
    page.click("#login-form input[type=submit]")
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")
    assert urlsplit(page.url).path == "/admin/login/"
