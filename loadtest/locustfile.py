"""The API's clients, for Locust: readers, and a writer when a token is given; the verdict at the end.

    .venv/bin/locust -f loadtest/locustfile.py --headless --host URL -u USERS -t 60s Reader [Writer]

`python -m loadtest` (make loadtest) builds this command; run Locust yourself for its web UI or its
other options. The options of this file: --rate, --mix, --writes-per-minute, --thresholds,
--host-header, --report; the token comes from LOADTEST_TOKEN (kept out of the process list).
"""

import json
import logging
import random
import urllib.request
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import RequestStats

from loadtest import MIX, REQUESTS_PER_WRITE, format_mix, parse_mix
from loadtest.thresholds import SETS, Endpoint, Measured, endpoints_table, judge, table
from tests.example import person_body

FILTERS = (
    "?passengerClass=1&survived=true",
    "?sex=female&ageMin=18&ageMax=40",
    "?search=william",
    "?fareMin=50&ordering=-fare",
    "?passengerClass=3&sex=male&ageMax=12",
    "?survived=false&ordering=age",
)
PAGE_SIZES = (10, 25, 50)
NAME_PREFIX = "Loadtest "  # every passenger the writer creates, and deletes
WARM_UP_ROUNDS = 4

passengers: list[str] = []  # the uuids of the dataset, read once before the users start
printed: list[str] = []  # the verdict's tables and summary line


@events.init_command_line_parser.add_listener
def options(parser: Any) -> None:
    parser.add_argument("--rate", type=float, default=2.0, help="requests/s of each reader (0: no pause)")
    parser.add_argument("--mix", default=format_mix(MIX), help="weights of the readers' tasks")
    parser.add_argument("--writes-per-minute", type=float, default=20.0, help="the writer's round trips per minute")
    parser.add_argument("--thresholds", choices=sorted(SETS), default="deployment", help="the threshold set")
    parser.add_argument("--host-header", default="", help="Host header to send (a route by name through an IP)")
    parser.add_argument("--report", default="", help="also write the verdict to this file as Markdown")
    parser.add_argument("--token", env_var="LOADTEST_TOKEN", default="", is_secret=True, help="a DRF token")


@events.init.add_listener
def configure(environment: Environment, **_: Any) -> None:
    """Shape the user classes from the options (before any user starts)."""
    options = environment.parsed_options
    if options is None:
        return
    weights = parse_mix(options.mix)
    Reader.tasks = [getattr(Reader, name) for name, weight in weights.items() for _ in range(weight)]
    Reader.wait_time = constant_throughput(options.rate) if options.rate > 0 else constant(0)
    Writer.wait_time = constant_throughput(options.writes_per_minute / 60)
    headers = {"Accept": "application/json"}
    if options.host_header:
        headers["Host"] = options.host_header
    Reader.default_headers = Writer.default_headers = headers


@events.test_start.add_listener
def prepare(environment: Environment, **_: Any) -> None:
    """Read the uuids the readers pick from, and warm the server up (a freshly started worker imports
    and caches on its first requests); none of this is measured."""
    options = environment.parsed_options
    headers = {"Accept": "application/json"}
    if options is not None and options.host_header:
        headers["Host"] = options.host_header

    def get(path: str) -> Any:
        request = urllib.request.Request(f"{environment.host}{path}", headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (the operator's own --url)
            return json.load(answer)

    try:
        passengers[:] = [person["uuid"] for person in get("/people")]
        paths = ("/people", f"/people/{passengers[0]}", f"/people{FILTERS[0]}", "/people?limit=10", "/people/stats")
        for path in paths * WARM_UP_ROUNDS:  # each on a new connection, to reach every worker
            get(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        logging.error("loadtest: reading %s/people before the run failed: %r", environment.host, error)
        passengers.clear()
    if not passengers:
        logging.error("loadtest: no passengers to read; stopping")
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()
    elif environment.stats is not None:
        environment.stats.reset_all()  # the run's clock starts now, after the warm-up


class Reader(FastHttpUser):
    """A client reading the list, passengers, filtered and paginated lists and the statistics."""

    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        self.etags: dict[str, str] = {}  # path -> the ETag it was last read with

    def read(self, path: str, name: str, first: bytes) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            body = response.content or b""
            if response.status_code != 200 or not body.startswith(first):
                response.failure(f"{response.status_code}: {body[:120]!r}")
                return
            etag = response.headers.get("ETag")
            if etag:
                self.etags[path] = etag

    def list(self) -> None:
        self.read("/people", "GET /people", b"[")

    def detail(self) -> None:
        self.read(f"/people/{random.choice(passengers)}", "GET /people/{uuid}", b"{")

    def filter(self) -> None:
        self.read(f"/people{random.choice(FILTERS)}", "GET /people?filters", b"[")

    def page(self) -> None:
        size = random.choice(PAGE_SIZES)
        offset = size * random.randrange(len(passengers) // size + 1)
        self.read(f"/people?limit={size}&offset={offset}", "GET /people?limit&offset", b"{")

    def stats(self) -> None:
        self.read("/people/stats", "GET /people/stats", b"{")

    def conditional(self) -> None:
        """Revalidate something read before: 304, or 200 with a new ETag if the data changed since."""
        if not self.etags:
            self.detail()
            return
        path, etag = random.choice(list(self.etags.items()))
        headers = {"If-None-Match": etag}
        with self.client.get(path, name="GET If-None-Match", headers=headers, catch_response=True) as response:
            if response.status_code == 200 and response.headers.get("ETag"):
                self.etags[path] = response.headers["ETag"]
            elif response.status_code != 304:
                response.failure(f"{response.status_code}: {(response.content or b'')[:120]!r}")


class Writer(FastHttpUser):
    """A client with a token: creates a passenger, updates it, deletes it; deletes leftovers on stop."""

    fixed_count = 1
    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        token = options.token if options is not None else ""
        if not token:
            logging.warning("loadtest: no token (LOADTEST_TOKEN): the writer does nothing")
            raise StopUser()
        self.auth = {"Authorization": f"Token {token}"}
        self.created: set[str] = set()

    def expect(self, method: str, path: str, name: str, statuses: Collection[int], **kwargs: Any) -> Any:
        """The answer's JSON (or None); a failure unless its status is one of `statuses`."""
        with self.client.request(method, path, name=name, headers=self.auth, catch_response=True, **kwargs) as answer:
            if answer.status_code not in statuses:
                answer.failure(f"{answer.status_code}: {(answer.content or b'')[:120]!r}")
                return None
            return answer.json() if answer.content else {}

    @task
    def round_trip(self) -> None:
        person = person_body(name=f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}")
        created = self.expect("POST", "/people", "POST /people", {201}, json=person)
        if not created:
            return
        self.created.add(created["uuid"])
        path = f"/people/{created['uuid']}"
        self.expect("PUT", path, "PUT /people/{uuid}", {200}, json={**person, "age": 31, "fare": 14.0})
        self.remove(created["uuid"])

    def remove(self, passenger: str) -> None:
        if self.expect("DELETE", f"/people/{passenger}", "DELETE /people/{uuid}", {204}) is not None:
            self.created.discard(passenger)

    def on_stop(self) -> None:
        for passenger in list(getattr(self, "created", ())):
            self.remove(passenger)


def offered_rps(environment: Environment) -> float | None:
    """Requests/s the users aim for once all have started; None when the readers do not pause."""
    options = environment.parsed_options
    if options is None or options.rate <= 0:
        return None
    writer = Writer in environment.user_classes  # it takes one of the users, with or without a token
    readers = options.num_users - writer
    writes = options.writes_per_minute / 60 * REQUESTS_PER_WRITE if writer and options.token else 0
    return readers * options.rate + writes


def measured(stats: RequestStats, offered: float | None) -> Measured:
    endpoints = [
        Endpoint(
            name=entry.name,
            requests=entry.num_requests,
            failures=entry.num_failures,
            p50_ms=entry.get_response_time_percentile(0.5),
            p95_ms=entry.get_response_time_percentile(0.95),
            p99_ms=entry.get_response_time_percentile(0.99),
        )
        for entry in stats.entries.values()
    ]
    seconds = (stats.last_request_timestamp or stats.start_time) - stats.start_time
    return Measured(endpoints=endpoints, seconds=seconds, offered_rps=offered)


@events.quitting.add_listener
def verdict(environment: Environment, **_: Any) -> None:
    """Judge the run and write the report; exit code 1 when a check failed (printed at quit, last)."""
    options = environment.parsed_options
    if options is None or environment.stats is None:
        return
    run = measured(environment.stats, offered_rps(environment))
    checks = judge(run, SETS[options.thresholds])
    failed = [check.name for check in checks if not check.passed]
    summary = (
        f"loadtest: {'FAILED' if failed else 'passed'} against {environment.host} "
        f"(thresholds {options.thresholds}): {run.requests} requests, {run.failures} failed, "
        f"{run.rps:.1f} req/s over {run.seconds:.0f} s" + (f"; missed: {', '.join(failed)}" if failed else "")
    )
    printed[:] = [table(checks), endpoints_table(run), summary]
    if options.report:
        errors = sorted(environment.stats.errors.values(), key=lambda error: -error.occurrences)[:5]
        lines = [f"### Load test: {'FAILED' if failed else 'passed'}", "", summary, "", table(checks, markdown=True)]
        lines += ["", endpoints_table(run, markdown=True)]
        if errors:
            lines += ["", "Failures (most frequent first):", ""]
            lines += [f"- {error.occurrences} times {error.method} {error.name}: {error.error}" for error in errors]
        Path(options.report).write_text("\n".join(lines) + "\n")
    if environment.process_exit_code is None:
        environment.process_exit_code = 1 if failed else 0


@events.quit.add_listener
def print_verdict(**_: Any) -> None:
    """After Locust's own summary, so that the verdict ends the output."""
    if printed:
        print("\n" + "\n\n".join(printed), flush=True)
