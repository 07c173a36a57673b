"""wrk runs: one bounded run, and the two ways the benchmark combines them."""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import log
from tests.example import person_body
from tests.harness.gunicorn import Gunicorn

REPORT_SCRIPT = Path(__file__).with_name("report.lua")
LATENCY_CONNECTIONS = 8
POST_BODY = person_body(name="Bench Post")

Run = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Request:
    """What wrk sends: a POST sends POST_BODY; a token goes in the Authorization header."""

    path: str
    method: str = "GET"
    token: str | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}{' (token)' if self.token else ''}"


def wrk(server: Gunicorn, request: Request, *, connections: int, duration: float, workdir: Path) -> Run:
    """One bounded wrk run; returns requests/s, p50 and p99 in ms and the error counts."""
    out = workdir / "wrk-out.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_WRK_OUT": str(out)}
    if request.method == "POST":
        env["BENCH_POST_BODY"] = json.dumps(POST_BODY)
    if request.token:
        env["BENCH_TOKEN"] = request.token
    command = [
        shutil.which("wrk") or "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "10s",
        "--script",
        str(REPORT_SCRIPT),
        server.url + request.path,
    ]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=duration + 60)
    raw = json.loads(out.read_text())
    seconds = raw["duration_us"] / 1e6
    errors = {key.removeprefix("errors_"): value for key, value in raw.items() if key.startswith("errors_")}
    return {
        "connections": connections,
        "duration_s": round(seconds, 2),
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "errors": sum(errors.values()),
        "errors_by_kind": {kind: count for kind, count in errors.items() if count},
    }


def measure(server: Gunicorn, request: Request, *, connections: int, duration: float, workdir: Path) -> Run:
    """One wrk run, logged."""
    result = wrk(server, request, connections=connections, duration=duration, workdir=workdir)
    log(
        f"  {server.name:8} {request!s:53} c={connections:<3} {result['requests_per_s']:9.1f} req/s  "
        f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}"
    )
    return result


def measure_against_ceiling(
    app: Gunicorn,
    ceiling: Gunicorn,
    request: Request,
    *,
    rounds: int,
    connections: int,
    duration: float,
    warmup: float,
    workdir: Path,
) -> Run:
    """Alternate short runs of the app and the ceiling (app-ceiling, then ceiling-app, ...), so that
    the machine's second-to-second swings hit both alike.

    The ratio pools every round: the app's requests/s over all its runs against the ceiling's over
    all of its own. Also returned: each round's ratio, and the app's round with the median ratio
    (its latencies, with the ceiling's of that round under "ceiling").
    """
    options: dict[str, Any] = {"connections": connections, "workdir": workdir}
    for server in (app, ceiling):
        wrk(server, request, duration=warmup, **options)
    runs = []
    for round_number in range(rounds):
        order = (app, ceiling) if round_number % 2 == 0 else (ceiling, app)
        measured = {server.name: measure(server, request, duration=duration, **options) for server in order}
        app_run, ceiling_run = measured[app.name], measured[ceiling.name]
        runs.append((app_run["requests_per_s"] / ceiling_run["requests_per_s"], app_run, ceiling_run))

    def pooled(index: int) -> float:
        return sum(run[index]["requests"] for run in runs) / sum(run[index]["duration_s"] for run in runs)

    ratio = pooled(1) / pooled(2)
    by_ratio = sorted(runs, key=lambda run: run[0])
    _, app_run, ceiling_run = by_ratio[len(runs) // 2]
    log(f"  pooled ratio {ratio:.1%} (rounds {by_ratio[0][0]:.1%} to {by_ratio[-1][0]:.1%})")
    return {
        **app_run,
        "requests_per_s_pooled": round(pooled(1), 1),
        "ceiling": {**ceiling_run, "requests_per_s_pooled": round(pooled(2), 1)},
        "ratio_to_ceiling": round(ratio, 3),
        "round_ratios": [round(run[0], 3) for run in by_ratio],
    }


def measure_latency(
    server: Gunicorn, request: Request, *, runs: int, duration: float, warmup: float, workdir: Path
) -> Run:
    """Latency at LATENCY_CONNECTIONS connections, in several wrk runs on fresh connections.

    gunicorn's workers take new connections unevenly (one worker sometimes takes all of them and
    the other idles), and one run keeps one such draw for its whole length; several runs sample
    several. The target is judged on the run with the median p99; the worst run is reported too.
    """
    options: dict[str, Any] = {"connections": LATENCY_CONNECTIONS, "workdir": workdir}
    wrk(server, request, duration=warmup, **options)
    measured = sorted(
        (measure(server, request, duration=duration, **options) for _ in range(runs)), key=lambda run: run["p99_ms"]
    )
    median, worst = measured[len(measured) // 2], measured[-1]["p99_ms"]
    log(f"  p99 at {LATENCY_CONNECTIONS} connections: median run {median['p99_ms']} ms, worst {worst} ms")
    return {**median, "runs_p99_ms": [run["p99_ms"] for run in measured], "worst_p99_ms": worst}
