"""The service under faults, measured with real processes on loopback (figures: docs/reliability.md).

PostgreSQL is a cluster of this module's own (tests/support/pgcluster.py: initdb, its own port),
so it can be crashed, locked and filled without touching the machine's shared server; where the
network itself must fail, the service reaches it through TcpProxy. The service is gunicorn with
the project's config. Clients send requests one after another on new connections, from a few
threads, for a bounded time and count. Each test prints its figures (pytest -s shows them).

What every test holds the service to: a request that needs an unavailable database is answered
503 with Retry-After and a JSON body, never 500, and within a bound, never a hang.
"""

import contextlib
import dataclasses
import json
import os
import random
import signal
import threading
import time
import uuid

import psycopg
import pytest
import requests

from tests.support.gunicorn import HTTPS, Gunicorn
from tests.support.net import TcpProxy
from tests.support.pgcluster import PgCluster
from tests.support.postgres import create_token, scratch_name

pytestmark = pytest.mark.e2e

DATABASE = scratch_name("faults")
MAX_CONNECTIONS = 12
STATEMENT_TIMEOUT = 1.0  # seconds; production defaults are larger (settings, .env.example)
REQUEST_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2
# The longest any answer may take: a request cut at REQUEST_TIMEOUT, or a connection attempt that
# libpq makes twice (sslmode=prefer) at CONNECT_TIMEOUT each, plus room for a busy 2-CPU machine.
ANSWER_BOUND = 2 * CONNECT_TIMEOUT + 4.0
RETRY_AFTER = "5"
UNAVAILABLE = {"detail": "The database is unavailable; try again shortly."}

PERSON = {
    "survived": False,
    "passengerClass": 3,
    "sex": "female",
    "age": 30,
    "siblingsOrSpousesAboard": 0,
    "parentsOrChildrenAboard": 0,
    "fare": 7.25,
}


@pytest.fixture(scope="module")
def cluster():
    with PgCluster(max_connections=MAX_CONNECTIONS) as cluster:
        cluster.create_dataset(DATABASE)
        yield cluster


@pytest.fixture(scope="module")
def token(cluster):
    return create_token(cluster.url(DATABASE), "fault-writer", "add_passenger")


@pytest.fixture(scope="module")
def uuids(cluster):
    return [str(row[0]) for row in cluster.sql("SELECT uuid FROM passengers_passenger", DATABASE)]


def serve(workdir, url, workers=3, **env):
    return Gunicorn(
        workdir,
        database_url=url,
        workers=workers,
        env={
            "DATABASE_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
            "DATABASE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
            "DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "TITANIC_WRITE_THROTTLE_RATE": "100000/min",
            **env,
        },
    )


# --- clients ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    kind: str  # read or write
    started: float
    ended: float
    status: int | None = None  # None: no HTTP answer (refused, reset)
    error: str | None = None
    retry_after: str | None = None
    body: bytes = b""
    name: str | None = None  # a write's unique passenger name

    @property
    def seconds(self):
        return self.ended - self.started


def send(server, method, path, kind="read", timeout=30, **kwargs):
    """One request on a new connection; never raises, the outcome is in the Answer."""
    headers = {**HTTPS, "Connection": "close", **kwargs.pop("headers", {})}
    started = time.monotonic()
    try:
        response = requests.request(method, server.url + path, headers=headers, timeout=timeout, **kwargs)
    except requests.RequestException as error:
        return Answer(kind, started, time.monotonic(), error=type(error).__name__)
    return Answer(
        kind,
        started,
        time.monotonic(),
        response.status_code,
        None,
        response.headers.get("Retry-After"),
        response.content,
    )


class Load:
    """Readers (GET a passenger or a page of the list) and writers (POST a passenger with a unique
    name, so the database can be checked afterwards), each one request at a time, until stopped;
    at most max_seconds and max_requests per thread."""

    def __init__(self, server, uuids, token, readers=2, writers=1, tag="load", max_seconds=60, max_requests=2000):
        self.server, self.uuids, self.token, self.tag = server, uuids, token, tag
        self.answers: list[Answer] = []
        self.stopping = threading.Event()
        self.limits = (max_seconds, max_requests)
        kinds = ["read"] * readers + ["write"] * writers
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in kinds]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self, kind):
        max_seconds, max_requests = self.limits
        deadline = time.monotonic() + max_seconds
        for _ in range(max_requests):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            self.answers.append(self._write() if kind == "write" else self._read())
            time.sleep(0.02)

    def _read(self):
        if random.random() < 0.5:
            return send(self.server, "GET", f"/people/{random.choice(self.uuids)}")
        return send(self.server, "GET", f"/people?limit=5&offset={random.randrange(880)}")

    def _write(self):
        name = f"Fault {self.tag} {uuid.uuid4().hex}"
        answer = send(
            self.server,
            "POST",
            "/people",
            kind="write",
            json={**PERSON, "name": name},
            headers={"Authorization": f"Token {self.token}"},
        )
        answer.name = name
        return answer


def assert_clear(answers, allowed_errors=0):
    """Every answer is a success or the documented 503, in bounded time; at most allowed_errors without
    any HTTP answer."""
    statuses = {a.status for a in answers}
    assert statuses <= {200, 201, 503, None}, sorted(statuses, key=str)
    for answer in answers:
        if answer.status == 503:
            assert answer.retry_after == RETRY_AFTER
            assert json.loads(answer.body) == UNAVAILABLE
    slowest = max(answers, key=lambda a: a.seconds)
    assert slowest.seconds < ANSWER_BOUND, slowest
    errors = [a for a in answers if a.status is None]
    assert len(errors) <= allowed_errors, errors


def first_success_after(answers, moment, kind):
    """Seconds from moment to the end of the first successful request of that kind started after it."""
    good = [a.ended - moment for a in answers if a.kind == kind and a.started >= moment and a.status in {200, 201}]
    assert good, f"no successful {kind} after the fault"
    return min(good)


def tally(answers):
    counts: dict[str, int] = {}
    for answer in answers:
        key = f"{answer.kind} {answer.status or answer.error}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


# --- item 9 of issue 14: readiness and 503s while the database is away -----------------------------------


def test_database_away_every_view_answers_503_with_retry_after_and_the_pod_stays_ready(cluster, token, uuids, tmp_path):
    proxy = TcpProxy(("127.0.0.1", cluster.port)).start()
    server = serve(tmp_path, f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE}")
    try:
        with proxy.down():
            server.start()
            # Never seen its database: not ready (a wrong DATABASE_URL must stop a rollout).
            assert {status for _, status, _ in server.get_from_every_worker("/ready")} == {503}
        assert server.request("GET", "/ready")[0] == 200
        server.get_from_every_worker("/people")  # cached by every worker before the outage

        needs_database = {
            "anonymous list, cached before": ("GET", "/people", {}),
            "anonymous passenger": ("GET", f"/people/{uuids[0]}", {}),
            "stats": ("GET", "/people/stats?search=outage", {}),
            "write with a token": ("POST", "/people", {"Authorization": f"Token {token}"}),
            "read with a token": ("GET", "/people", {"Authorization": f"Token {token}"}),
            "read with a session cookie": ("GET", "/people", {"Cookie": "sessionid=notarealsessionnotarealsession00"}),
            "admin with a session cookie": ("GET", "/admin/", {"Cookie": "sessionid=notarealsessionnotarealsession00"}),
        }
        with proxy.down():
            ready = server.get_from_every_worker("/ready")
            answers = {
                what: send(server, method, path, json=PERSON if method == "POST" else None, headers=headers)
                for what, (method, path, headers) in needs_database.items()
            }
            health = send(server, "GET", "/health")
            welcome = send(server, "GET", "/")  # needs no database
        assert {status for _, status, _ in ready} == {200}, "the pod left the load balancer"
        assert health.status == 200 and welcome.status == 200
        for what, answer in answers.items():
            assert answer.status == 503, (what, answer)
            assert answer.seconds < 1.0, (what, answer)
        assert_clear(list(answers.values()))
        print(f"\ndatabase refused: {max(a.seconds for a in answers.values()):.3f} s at most for a 503")

        back = [send(server, "GET", path) for path in ("/people", f"/people/{uuids[0]}", "/people/stats")]
        assert [a.status for a in back] == [200, 200, 200]
    finally:
        server.stop()
        proxy.stop()


# --- issue 16: figures under faults --------------------------------------------------------------------------


def test_postgresql_crash_and_restart_under_read_and_write_load(cluster, token, uuids, tmp_path):
    """An immediate shutdown (a crash: WAL recovery at start), 3 s down, then started again."""
    with (
        serve(tmp_path, cluster.url(DATABASE)) as server,
        Load(server, uuids, token, readers=2, writers=2, tag="crash") as load,
    ):
        time.sleep(2)
        down = time.monotonic()
        cluster.stop(mode="immediate")
        time.sleep(3)
        cluster.start()
        back = time.monotonic()
        time.sleep(3)
    answers = load.answers
    assert_clear(answers)
    failed = [a for a in answers if a.status == 503]
    assert failed, "no request failed: the restart was not seen"
    assert all(down - 1 < a.started < back + 5 for a in failed), "a 503 outside the outage"
    read_after = first_success_after(answers, back, "read")
    write_after = first_success_after(answers, back, "write")
    assert read_after < 5 and write_after < 5

    names = [
        row[0] for row in cluster.sql("SELECT name FROM passengers_passenger WHERE name LIKE 'Fault crash %'", DATABASE)
    ]
    stored = {name: names.count(name) for name in names}
    acknowledged = {a.name for a in answers if a.kind == "write" and a.status == 201}
    unanswered = {a.name for a in answers if a.kind == "write" and a.status != 201}
    assert all(stored.get(name) == 1 for name in acknowledged), "an acknowledged write was lost or duplicated"
    assert set(stored) <= acknowledged | unanswered and max(stored.values()) == 1
    print(
        f"\ncrash+restart: down {back - down:.1f} s; answers {tally(answers)}; first good read "
        f"{read_after:.2f} s and write {write_after:.2f} s after pg_ctl start returned; "
        f"{len(acknowledged)} acknowledged writes all stored once, "
        f"{len(unanswered & set(stored))} of {len(unanswered)} failed writes stored anyway"
    )


def test_one_worker_killed_under_load(cluster, token, uuids, tmp_path):
    """The worker killed is serving a write that waits on a table lock (reads keep flowing)."""
    held_for = {"DATABASE_STATEMENT_TIMEOUT": "5", "DATABASE_REQUEST_TIMEOUT": "5"}  # longer than the lock
    name = f"Fault killed {uuid.uuid4().hex}"
    with serve(tmp_path, cluster.url(DATABASE), **held_for) as server:
        before = set(server.workers())
        with cluster.connect(DATABASE) as lock, Load(server, uuids, token, readers=3, writers=0) as load:
            time.sleep(1)
            lock.execute("LOCK TABLE passengers_passenger IN EXCLUSIVE MODE")  # blocks writes, not reads
            write = server.connect()
            auth = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
            write.request("POST", "/people", body=json.dumps({**PERSON, "name": name}), headers={**HTTPS, **auth})
            time.sleep(0.5)
            victim = server.worker_serving(write)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while len(set(server.workers()) - before) < 1 and time.monotonic() - killed_at < 10:
                time.sleep(0.05)
            replaced = time.monotonic() - killed_at
            lock.rollback()
            with pytest.raises(ConnectionError):  # reset or closed: no HTTP answer at all
                write.getresponse()
            time.sleep(2)
        answers = load.answers
        assert len(server.workers()) == len(before)
    stored = cluster.sql(f"SELECT count(*) FROM passengers_passenger WHERE name = '{name}'", DATABASE)[0][0]
    # Reads on other workers are not disturbed; those queued on the killed one lose their connection.
    assert_clear(answers, allowed_errors=3)
    assert not [a for a in answers if a.status == 503]
    assert replaced < 5
    after = [a for a in answers if a.started > killed_at + replaced + 0.5]
    assert after and all(a.status == 200 for a in after)
    print(
        f"\nworker SIGKILL: the write in flight got no answer (stored anyway: {stored}); load {tally(answers)}; "
        f"a new worker forked {replaced:.2f} s later"
    )


def test_master_sigterm_under_load_completes_the_requests_in_flight(cluster, token, uuids, tmp_path):
    """Three requests held in the database by a table lock are in flight when SIGTERM arrives."""
    held_for = {"DATABASE_STATEMENT_TIMEOUT": "5", "DATABASE_REQUEST_TIMEOUT": "5"}  # longer than the lock
    server = serve(tmp_path, cluster.url(DATABASE), GUNICORN_GRACEFUL_TIMEOUT="10", **held_for).start()
    try:
        held = []
        with cluster.connect(DATABASE) as lock, Load(server, uuids, token, readers=2, writers=1) as load:
            time.sleep(1)
            lock.execute("LOCK TABLE passengers_passenger IN ACCESS EXCLUSIVE MODE")
            slow = [
                threading.Thread(
                    target=lambda: held.append(send(server, "GET", f"/people/stats?search={uuid.uuid4()}"))
                )
                for _ in range(3)
            ]
            for thread in slow:
                thread.start()
            time.sleep(0.5)
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            lock.rollback()  # the held requests now finish
            for thread in slow:
                thread.join(timeout=15)
            exit_code = server.process.wait(timeout=15)
            stopped_after = time.monotonic() - stopping
    finally:
        server.stop()
    assert [a.status for a in held] == [200, 200, 200], held
    assert exit_code == 0 and stopped_after < 10
    answers = load.answers
    assert all(a.status in {200, 201} for a in answers if a.ended < stopping)
    late = [a for a in answers if a.ended >= stopping]
    # After SIGTERM: a complete answer, or a refused/reset connection (in a pod, the preStop sleep
    # and the endpoint removal keep new requests away by then); never an error status.
    assert {a.status for a in late} <= {200, 201, None}
    print(
        f"\nmaster SIGTERM: 3 requests in flight answered 200; exited with 0 after {stopped_after:.2f} s; "
        f"answers ending after SIGTERM {tally(late)}"
    )


def test_a_slow_database_answers_503_within_the_bound(cluster, uuids, tmp_path):
    proxy = TcpProxy(("127.0.0.1", cluster.port)).start()
    try:
        with serve(tmp_path, f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE}") as server:
            server.get_from_every_worker("/people")  # every worker connected
            # A lock wait counts toward statement_timeout: the server cancels the statement.
            with cluster.connect(DATABASE) as lock:
                lock.execute("LOCK TABLE passengers_passenger IN ACCESS EXCLUSIVE MODE")
                locked = send(server, "GET", "/people/stats?search=locked")
            # Network latency does not count toward statement_timeout: the request deadline cuts it.
            with proxy.slowed(30):
                delayed = send(server, "GET", "/people/stats?search=delayed")
            recovered = send(server, "GET", "/people/stats?search=recovered")
        with serve(tmp_path, f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE}", workers=1,
                   DATABASE_REQUEST_TIMEOUT="0") as unbounded:  # fmt: skip
            unbounded.request("GET", "/people")
            with proxy.slowed(0.5):
                latency_only = send(unbounded, "GET", "/people/stats?search=latency")
    finally:
        proxy.stop()
    assert_clear([locked, delayed])
    assert locked.status == 503 and STATEMENT_TIMEOUT <= locked.seconds < STATEMENT_TIMEOUT + 2
    assert delayed.status == 503 and REQUEST_TIMEOUT <= delayed.seconds < REQUEST_TIMEOUT + 2
    assert recovered.status == 200
    # Without the request deadline, 0.5 s per message is not cut by a 1 s statement_timeout.
    assert latency_only.status == 200 and latency_only.seconds > 2 * STATEMENT_TIMEOUT
    print(
        f"\nslow database: lock wait -> 503 after {locked.seconds:.2f} s (statement_timeout {STATEMENT_TIMEOUT} s); "
        f"30 s per message -> 503 after {delayed.seconds:.2f} s (request timeout {REQUEST_TIMEOUT} s); "
        f"0.5 s per message without the request timeout -> 200 after {latency_only.seconds:.2f} s"
    )


def test_database_at_max_connections_then_freed(cluster, tmp_path):
    with serve(tmp_path, cluster.url(DATABASE), workers=2, DATABASE_CONN_MAX_AGE="0") as server:
        server.request("GET", "/ready")
        with contextlib.ExitStack() as hog:
            with contextlib.suppress(psycopg.OperationalError):
                for _ in range(MAX_CONNECTIONS + 1):
                    hog.enter_context(cluster.connect(DATABASE))
            full = [send(server, "GET", f"/people/stats?search=full{i}") for i in range(10)]
            ready = send(server, "GET", "/ready")
            freed = time.monotonic()
        waiting: list[Answer] = []
        while not waiting or (waiting[-1].status != 200 and time.monotonic() - freed < 10):
            waiting.append(send(server, "GET", f"/people/stats?search=freed{len(waiting)}"))
        recovery = waiting[-1].ended - freed
        after = [send(server, "GET", f"/people/stats?search=after{i}") for i in range(5)]
    assert_clear(full + waiting + after)
    assert {a.status for a in full} == {503}
    assert max(a.seconds for a in full) < 1.0
    assert ready.status == 200
    assert waiting[-1].status == 200 and recovery < 2
    assert {a.status for a in after} == {200}
    print(
        f"\nmax_connections: {len(full)} requests -> 503 in {max(a.seconds for a in full):.3f} s at most; "
        f"first 200 {recovery:.3f} s after connections were freed"
    )
