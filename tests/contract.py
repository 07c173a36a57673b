"""The /people contract over real HTTP, against any running deployment.

    python -m tests.contract BASE_URL [--host HOST] [--token TOKEN]
    python -m tests.contract BASE_URL --host HOST --read-load-until FILE [--max-seconds N]

The first form checks the contract of README.md ("The /people contract"): types of every field,
201/200/204/404 through a create-read-update-delete round trip, and bad input answered 4xx with
nothing written. Writes need TITANIC_ANONYMOUS_WRITES=1 on the server or a --token. The second
form reads GET /people/{uuid} in a loop until FILE exists (bounded by --max-seconds) and fails if
any request failed: scripts/kind-e2e runs it across a rolling restart. HOST, when given, is sent as
the Host header (a route by host name reached through a port-forward on 127.0.0.1).

tests/test_contract.py runs the first form against a live server in the normal suite;
scripts/kind-e2e and the CI compose job run it against a cluster and docker compose.
"""

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from tests.example import person_body

PERSON = person_body(name="Miss. Contract Check", sex="female")


class Client:
    def __init__(self, base_url, host=None, token=None):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if host:
            self.session.headers["Host"] = host
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def __call__(self, method, path, **kwargs):
        return self.session.request(method, self.base + path, timeout=30, **kwargs)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_person(person):
    check(isinstance(person["uuid"], str) and uuid.UUID(person["uuid"]), person)
    check(isinstance(person["survived"], bool), f"survived is not a boolean: {person}")
    check(person["passengerClass"] in (1, 2, 3) and type(person["passengerClass"]) is int, person)
    check(isinstance(person["name"], str) and person["name"], person)
    check(person["sex"] in ("male", "female", "other"), person)
    check(type(person["age"]) in (int, float) and not isinstance(person["age"], bool), person)
    if isinstance(person["age"], float):
        check(not person["age"].is_integer(), f"an integral age renders as an integer: {person}")
    for key in ("siblingsOrSpousesAboard", "parentsOrChildrenAboard"):
        check(type(person[key]) is int and person[key] >= 0, person)
    check(type(person["fare"]) is float, f"fare must render with a fraction: {person}")


def contract(client):
    """Every check of the contract; raises AssertionError naming the first that fails."""
    listing = client("GET", "/people")
    check(listing.status_code == 200, f"GET /people: {listing.status_code}")
    people = listing.json()
    check(isinstance(people, list), "GET /people is not a JSON array")
    for person in people[:100]:
        check_person(person)
    check(client("GET", "/people/").status_code == 200, "GET /people/ (trailing slash)")

    created = client("POST", "/people", json=PERSON)
    check(created.status_code == 201, f"POST /people: {created.status_code} {created.text[:200]}")
    person = created.json()
    check_person(person)
    check({k: person[k] for k in PERSON} == PERSON, f"POST returned {person}")
    path = f"/people/{person['uuid']}"
    fetched = client("GET", path)
    check(fetched.status_code == 200 and fetched.json() == person, f"GET {path}: {fetched.status_code}")
    changed = {**PERSON, "age": 0.42, "fare": 263.0}
    updated = client("PUT", path, json=changed)
    check(updated.status_code == 200, f"PUT {path}: {updated.status_code} {updated.text[:200]}")
    check(updated.json()["age"] == 0.42 and updated.json()["fare"] == 263.0, updated.text)
    check(client("GET", path).json() == updated.json(), "PUT not read back")

    count = len(client("GET", "/people").json())
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/people", {"data": "{not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/people", {"json": {**PERSON, "survived": 1}}),
        ("POST", "/people", {"json": {**PERSON, "passengerClass": 4}}),
        ("POST", "/people", {"json": {**PERSON, "sex": "unknown"}}),
        ("POST", "/people", {"json": {**PERSON, "age": "22"}}),
        ("PUT", path, {"json": {**PERSON, "fare": -1}}),
    ]
    for method, target, kwargs in bad:
        answer = client(method, target, **kwargs)
        check(400 <= answer.status_code < 500, f"{method} {target} {kwargs}: {answer.status_code}")
        check(isinstance(answer.json(), dict), f"{method} {target}: the 4xx body is not a JSON object")
    check(len(client("GET", "/people").json()) == count, "bad input changed the passenger list")
    check(client("GET", path).json() == updated.json(), "a rejected PUT changed the passenger")
    check(client("GET", "/people/not-a-uuid").status_code in (400, 404), "a malformed uuid is not 404/400")

    deleted = client("DELETE", path)
    check(deleted.status_code == 204 and not deleted.content, f"DELETE {path}: {deleted.status_code}")
    check(client("GET", path).status_code == 404, f"GET {path} after DELETE")
    check(client("DELETE", path).status_code == 404, f"DELETE {path} twice")
    return person


def read_load(client, until, max_seconds, target=None):
    """GET one passenger (default: the first listed) until `until` exists; returns (requests, failures)."""
    target = target or f"/people/{client('GET', '/people').json()[0]['uuid']}"
    done, failures, deadline = 0, [], time.monotonic() + max_seconds
    while not Path(until).exists() and time.monotonic() < deadline:
        try:
            answer = client("GET", target)
            if answer.status_code != 200:
                failures.append(answer.status_code)
        except requests.RequestException as error:
            failures.append(type(error).__name__)
        done += 1
    return done, failures


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.contract", description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--host")
    parser.add_argument("--token")
    parser.add_argument("--read-load-until", metavar="FILE")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    client = Client(args.base_url, args.host, args.token)
    if args.read_load_until:
        done, failures = read_load(client, args.read_load_until, args.max_seconds)
        print(f"{done} reads, {len(failures)} failed {failures[:20]}")
        return 1 if failures or not done else 0
    try:
        contract(client)
    except AssertionError as error:
        print(f"contract: FAILED: {error}", file=sys.stderr)
        return 1
    print(f"contract: passed against {args.base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
