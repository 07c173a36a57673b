"""The thresholds, as code, and the verdict of a run against them.

A run passes when every check passes: the ratio of failed requests, the throughput, and the p95 and
p99 latency of every endpoint the run exercised. Failed means a transport error or an answer the
scenario did not expect (any 5xx, 429, a 200 where a 304 or a 201 was due...).

How the sets were chosen (docs/operations.md, "Load test"):
- deployment: what a client of dev or prod should get through the load balancer, stricter than the
  alerts of the monitoring component (p95 above 1 s on an endpoint pages; 5xx above 5 % pages): a
  load test must fail before users would notice. The whole list is 200 kB, so it gets more time.
- local: the app under gunicorn on the machine that runs the load generator too (make loadtest
  without URL, the suite). Errors are not noise, so none is allowed; latency limits sit an order of
  magnitude above what was measured under the default load on a busy 2-CPU machine, so that they
  catch a broken cache, a lock or a timeout and never the neighbours' load.
- scale-out: a saturating run while the autoscaler adds pods (the kind job): no request may fail,
  and none may come near the 10 s request deadline; latency is otherwise expected to be poor.
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

READ_ENDPOINTS = (
    "GET /people",
    "GET /people/{uuid}",
    "GET /people?filters",
    "GET /people?limit&offset",
    "GET /people/stats",
    "GET If-None-Match",
)
WRITE_ENDPOINTS = ("POST /people", "PUT /people/{uuid}", "DELETE /people/{uuid}")


@dataclasses.dataclass(frozen=True)
class Latency:
    p95_ms: float
    p99_ms: float


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float
    # Throughput: at least this share of the offered request rate (when the users pace themselves) ...
    min_share_of_offered: float
    # ... and never under this many requests per second.
    min_rps: float
    reads: Latency
    writes: Latency
    endpoints: Mapping[str, Latency] = dataclasses.field(default_factory=dict)

    def latency(self, endpoint: str) -> Latency:
        if endpoint in self.endpoints:
            return self.endpoints[endpoint]
        return self.writes if endpoint in WRITE_ENDPOINTS else self.reads


SETS = {
    "deployment": Thresholds(
        max_error_ratio=0.001,
        min_share_of_offered=0.9,
        min_rps=1,
        reads=Latency(p95_ms=250, p99_ms=1000),
        writes=Latency(p95_ms=500, p99_ms=1500),
        endpoints={"GET /people": Latency(p95_ms=500, p99_ms=1500)},
    ),
    "local": Thresholds(
        max_error_ratio=0,
        min_share_of_offered=0.8,
        min_rps=1,
        reads=Latency(p95_ms=2000, p99_ms=5000),
        writes=Latency(p95_ms=3000, p99_ms=6000),
    ),
    "scale-out": Thresholds(
        max_error_ratio=0,
        min_share_of_offered=0,
        min_rps=20,
        reads=Latency(p95_ms=3000, p99_ms=5000),
        writes=Latency(p95_ms=3000, p99_ms=5000),
    ),
}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """What a run measured of one endpoint (latencies in ms)."""

    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclasses.dataclass(frozen=True)
class Measured:
    endpoints: list[Endpoint]
    seconds: float
    offered_rps: float | None  # None: the users do not pace themselves (closed loop)

    @property
    def requests(self) -> int:
        return sum(endpoint.requests for endpoint in self.endpoints)

    @property
    def failures(self) -> int:
        return sum(endpoint.failures for endpoint in self.endpoints)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    measured: str
    threshold: str
    passed: bool


def ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def judge(measured: Measured, thresholds: Thresholds) -> list[Check]:
    """Every check of the run, in the order of the table."""
    checks = []
    ratio = measured.failures / measured.requests if measured.requests else 1.0
    checks.append(
        Check(
            "failed requests",
            f"{ratio:.2%} ({measured.failures} of {measured.requests})",
            f"≤ {thresholds.max_error_ratio:.2%}",
            measured.requests > 0 and ratio <= thresholds.max_error_ratio,
        )
    )
    floor = thresholds.min_rps
    threshold = f"≥ {floor:g} req/s"
    if measured.offered_rps:
        paced = thresholds.min_share_of_offered * measured.offered_rps
        if paced > floor:
            floor = paced
            share = f"{thresholds.min_share_of_offered:.0%} of {measured.offered_rps:g} offered"
            threshold = f"≥ {floor:.1f} req/s ({share})"
    checks.append(Check("throughput", f"{measured.rps:.1f} req/s", threshold, measured.rps >= floor))
    for endpoint in sorted(measured.endpoints, key=lambda e: order(e.name)):
        if not endpoint.requests:
            continue
        limit = thresholds.latency(endpoint.name)
        for label, value, bound in (("p95", endpoint.p95_ms, limit.p95_ms), ("p99", endpoint.p99_ms, limit.p99_ms)):
            checks.append(Check(f"{endpoint.name} {label}", ms(value), f"≤ {ms(bound)}", value <= bound))
    return checks


def order(name: str) -> tuple[int, str]:
    known = READ_ENDPOINTS + WRITE_ENDPOINTS
    return (known.index(name), name) if name in known else (len(known), name)


def table(checks: Iterable[Check], markdown: bool = False) -> str:
    rows = [("Check", "Measured", "Threshold", "Result")]
    rows += [(c.name, c.measured, c.threshold, "pass" if c.passed else "FAIL") for c in checks]
    return render(rows, markdown)


def endpoints_table(measured: Measured, markdown: bool = False) -> str:
    """What each endpoint got, for the record (the checks judge p95 and p99)."""
    rows = [("Endpoint", "Requests", "Failed", "p50", "p95", "p99")]
    for e in sorted(measured.endpoints, key=lambda e: order(e.name)):
        rows.append((e.name, str(e.requests), str(e.failures), ms(e.p50_ms), ms(e.p95_ms), ms(e.p99_ms)))
    return render(rows, markdown)


def render(rows: Sequence[tuple[str, ...]], markdown: bool) -> str:
    """A Markdown table (GitHub's job summary), or columns padded for a terminal."""
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "---|" * len(rows[0]))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    padded = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in padded)
