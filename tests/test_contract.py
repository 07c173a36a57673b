"""tests/contract.py (the contract suite scripts/kind-e2e and the compose CI job run over HTTP), run
here against Django's live server so that it is known to pass, and known to catch a broken answer."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from passengers.models import Passenger
from tests import contract

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(live_server, settings, passenger):
    settings.TITANIC_ANONYMOUS_WRITES = True
    return contract.Client(live_server.url, host="localhost")


@pytest.fixture
def passenger(db):
    return Passenger.objects.create(
        survived=False,
        passenger_class=3,
        name="Mr. Owen Harris Braund",
        sex="male",
        age=22,
        siblings_or_spouses_aboard=1,
        parents_or_children_aboard=0,
        fare=7.25,
    )


def test_the_contract_passes_against_the_app(client):
    person = contract.contract(client)
    assert person["name"] == contract.PERSON["name"]


def test_the_command_line_reports_success_and_failure(live_server, settings, db, capsys):
    settings.TITANIC_ANONYMOUS_WRITES = True
    assert contract.main([live_server.url]) == 0
    settings.TITANIC_ANONYMOUS_WRITES = False  # anonymous POST answers 401: the contract must fail
    assert contract.main([live_server.url]) == 1
    assert "POST /people: 401" in capsys.readouterr().err


def test_read_load_counts_failures(client, passenger, tmp_path):
    stop = tmp_path / "stop"
    threading.Timer(0.5, stop.touch).start()
    target = f"/people/{passenger.uuid}"  # a fresh one: the list may be cached from an earlier test
    done, failures = contract.read_load(client, stop, max_seconds=10, target=target)
    assert done > 0 and failures == []


def test_a_float_age_that_is_integral_breaks_the_contract():
    person = {**contract.PERSON, "uuid": "49dc24bd-906d-4497-bcfc-ecc8c309ecfc", "age": 22.0}
    with pytest.raises(AssertionError, match="integral age"):
        contract.check_person(person)
    with pytest.raises(AssertionError, match="fare"):
        contract.check_person({**person, "age": 22, "fare": 7})


def test_read_load_fails_on_errors(tmp_path):
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'[{"uuid": "49dc24bd-906d-4497-bcfc-ecc8c309ecfc"}]' if self.path == "/people" else b"{}"
            self.send_response(200 if self.path == "/people" else 502)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = contract.Client(f"http://127.0.0.1:{server.server_address[1]}")
        done, failures = contract.read_load(client, tmp_path / "never", max_seconds=0.3)
    finally:
        server.shutdown()
    assert done and set(failures) == {502}
