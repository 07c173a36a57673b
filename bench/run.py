"""One benchmark run: a loaded database, the app and its ceiling under gunicorn, wrk against every
endpoint, the workers' memory, loadcsv at scale, and the targets judged."""

import contextlib
import datetime
import json
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import log
from bench.loadcsv import loadcsv_scaling
from bench.wrk import POST_BODY, Request, measure_against_ceiling, measure_latency
from tests.harness import REPO
from tests.harness.gunicorn import Gunicorn
from tests.harness.postgres import create_token, drop_database, load_dataset, psql

MODES: dict[str, dict[str, Any]] = {
    # duration and warm-up per wrk run (seconds), rounds of app-and-ceiling runs per endpoint,
    # connections for the throughput runs, loadcsv sizes
    "full": {"duration": 2, "warmup": 3, "rounds": 16, "connections": 16, "loadcsv_rows": [887, 20_000, 200_000]},
    "smoke": {"duration": 2, "warmup": 1, "rounds": 2, "connections": 8, "loadcsv_rows": [887, 20_000]},
}

TARGETS = {
    "people_ratio": ("GET /people / ceiling", ">=", 0.40),
    "detail_ratio": ("GET /people/{uuid} / ceiling", ">=", 0.40),
    "people_token_ratio": ("GET /people with a token / ceiling", ">=", 0.25),
    "detail_token_ratio": ("GET /people/{uuid} with a token / ceiling", ">=", 0.25),
    "detail_p99_ms_at_8": ("p99 GET /people/{uuid} at 8 connections (ms)", "<=", 8.0),
    "worker_rss_mb": ("peak RSS per worker (MB)", "<=", 120.0),
    "loadcsv_200k_seconds": ("loadcsv of 200,000 rows (s)", "<=", 30.0),
}

Results = dict[str, Any]


# --- the servers --------------------------------------------------------------------------------


def app_server(workdir: Path, url: str, gunicorn_env: dict[str, str]) -> Gunicorn:
    env = {
        **gunicorn_env,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        # The defaults (120/min per client) would turn the POST run and the renders into 429 benchmarks.
        "TITANIC_WRITE_THROTTLE_RATE": "100000000/min",
        "TITANIC_READ_THROTTLE_RATE": "100000000/min",
    }
    return Gunicorn(workdir, database_url=url, env=env)


def endpoints_of(app: Gunicorn, token: str) -> dict[str, Request]:
    _, people = app.request("GET", "/people")
    detail = f"/people/{json.loads(people)[len(json.loads(people)) // 2]['uuid']}"
    return {
        "people": Request("/people"),
        "detail": Request(detail),
        "people_token": Request("/people", token=token),
        "detail_token": Request(detail, token=token),
        "filtered": Request("/people?passengerClass=1&survived=true"),
        "stats": Request("/people/stats"),
        "create": Request("/people", "POST", token),
    }


def capture_answers(app: Gunicorn, endpoints: dict[str, Request], token: str, workdir: Path) -> dict[str, int]:
    """Keep the very bytes the API answers every endpoint with, for the ceilings; return their sizes."""
    headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    routes, sizes = {}, {}
    for index, (name, request) in enumerate(endpoints.items()):
        body = json.dumps({**POST_BODY, "name": "Bench Ceiling Sample"}) if request.method == "POST" else None
        status, data = app.request(request.method, request.path, body=body, headers=headers if body else None)
        if request.method == "POST":  # keep the list at the dataset's size
            app.request("DELETE", f"/people/{json.loads(data)['uuid']}", headers=headers)
        (workdir / f"body-{index}").write_bytes(data)
        routes[f"{request.method} {request.path}"] = {"status": status, "file": str(workdir / f"body-{index}")}
        sizes[name] = len(data)
    routes["GET /health"] = routes["GET /people/stats"]
    (workdir / "ceiling.json").write_text(json.dumps(routes))
    return sizes


def ceiling_server(workdir: Path, gunicorn_env: dict[str, str], stamp_url: str | None = None) -> Gunicorn:
    """The ceiling serving the captured answers; with stamp_url, after a read of the dataset stamp."""
    env = {**gunicorn_env, "BENCH_CEILING_MAP": str(workdir / "ceiling.json")}
    if stamp_url:
        env["BENCH_CEILING_STAMP_URL"] = stamp_url
    name = "stamped" if stamp_url else "ceiling"
    return Gunicorn(workdir, app="bench.ceiling:application", name=name, env=env)


# --- memory -------------------------------------------------------------------------------------


def rss_kb(pids: list[int]) -> dict[int, int]:
    rss = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1])
    return rss


@contextlib.contextmanager
def rss_peaks(server: Gunicorn, interval: float = 0.5) -> Iterator[dict[int, int]]:
    """Each worker's peak RSS (kB) while the block runs (workers can be recycled by max_requests)."""
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            for pid, kb in rss_kb(server.workers()).items():
                peaks[pid] = max(kb, peaks.get(pid, 0))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def memory(server: Gunicorn, peaks: dict[int, int]) -> Results:
    after = rss_kb(server.workers())
    return {
        "rss_mb_after_run": sorted(round(kb / 1024, 1) for kb in after.values()),
        "peak_rss_mb_by_worker": sorted(round(kb / 1024, 1) for kb in peaks.values()),
        "peak_rss_mb_max": round(max([*peaks.values(), *after.values()]) / 1024, 1),
        "workers_seen": len(set(peaks) | set(after)),
    }


# --- the measurements ---------------------------------------------------------------------------


def measure_endpoints(
    app: Gunicorn,
    ceiling: Gunicorn,
    endpoints: dict[str, Request],
    settings: dict[str, Any],
    workdir: Path,
) -> Results:
    """Every endpoint against its ceiling; the latency of the detail and of the POST at 8 connections too
    (the POST last: it grows the list)."""
    options = {key: settings[key] for key in ("rounds", "connections", "duration", "warmup")}
    latency = {"runs": settings["rounds"], "duration": settings["duration"] * 2, "warmup": settings["warmup"]}
    results: Results = {"endpoints": {}}
    for name, request in endpoints.items():
        row = {"method": request.method, "path": request.path, "token": bool(request.token)}
        row.update(measure_against_ceiling(app, ceiling, request, workdir=workdir, **options))
        results["endpoints"][name] = row
        if name == "detail":
            results["detail_at_8_connections"] = measure_latency(app, request, workdir=workdir, **latency)
    results["create_at_8_connections"] = measure_latency(app, endpoints["create"], workdir=workdir, **latency)
    return results


def measure_stamped_ceiling(
    stamped: Gunicorn, ceiling: Gunicorn, endpoints: dict[str, Request], settings: dict[str, Any], workdir: Path
) -> Results:
    """The ceiling that also reads the dataset stamp per request, against the ceiling: what the one
    database round trip that keeps cached answers fresh leaves of the ceiling, with no Python around it."""
    log("the ceiling with a stamp read per request")
    options = {key: settings[key] for key in ("rounds", "connections", "duration", "warmup")}
    results = {}
    for name in ("people", "detail"):
        row = measure_against_ceiling(stamped, ceiling, endpoints[name], workdir=workdir, **options)
        results[name] = {key: row[key] for key in ("ratio_to_ceiling", "round_ratios", "errors")}
    return results


def serve_and_measure(settings: dict[str, Any], database: str, workdir: Path, gunicorn_env: dict[str, str]) -> Results:
    log(f"preparing database {database} (migrate, loadcsv, a user with a token)")
    url = load_dataset(database)
    token = create_token(url, "bench-writer", "add_passenger", "delete_passenger")
    results: Results = {}
    with app_server(workdir, url, gunicorn_env) as app:
        config = app.config()
        results["gunicorn"] = {
            key: config.get(key) for key in ("workers", "threads", "worker_class", "keepalive", "max_requests")
        }
        log(f"gunicorn: {results['gunicorn']}")
        endpoints = endpoints_of(app, token)
        results["body_bytes"] = capture_answers(app, endpoints, token, workdir)
        ceiling, stamped = ceiling_server(workdir, gunicorn_env), ceiling_server(workdir, gunicorn_env, url)
        with ceiling, stamped:
            duration, warmup, connections = settings["duration"], settings["warmup"], settings["connections"]
            results["load"] = {
                "tool": "wrk",
                "wrk_threads": 1,
                "connections": connections,
                "duration_s": duration,
                "rounds": settings["rounds"],
                "warmup_s": warmup,
            }
            log(
                f"wrk: {settings['rounds']} rounds of app and ceiling, {duration} s each after a {warmup} s "
                f"warm-up, {connections} connections, 1 thread"
            )
            with rss_peaks(app) as peaks:
                results.update(measure_endpoints(app, ceiling, endpoints, settings, workdir))
            results["memory"] = memory(app, peaks)
            log(f"  memory: {results['memory']}")
            results["stamped_ceiling"] = measure_stamped_ceiling(stamped, ceiling, endpoints, settings, workdir)
    posted = psql(
        "WITH gone AS (DELETE FROM passengers_passenger WHERE name LIKE 'Bench %' RETURNING 1) "
        "SELECT count(*) FROM gone",
        database=database,
    )
    results["cleanup"] = f"deleted the {posted} passengers the POST run created (the database is recreated per run)"
    return results


# --- the record ---------------------------------------------------------------------------------


def machine() -> Results:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version[0] if wrk_version else "",
        "load_average_at_start": os.getloadavg(),
    }


def git_revision() -> Results:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def judge(results: Results) -> Results:
    endpoints = results["endpoints"]
    values = {
        f"{name}_ratio": endpoints[name]["ratio_to_ceiling"]
        for name in ("people", "detail", "people_token", "detail_token")
    }
    values |= {
        "detail_p99_ms_at_8": results["detail_at_8_connections"]["p99_ms"],
        "worker_rss_mb": results["memory"]["peak_rss_mb_max"],
    }
    big = [row for row in results["loadcsv"] if row["rows"] == 200_000]
    if big:
        values["loadcsv_200k_seconds"] = big[0]["seconds"]
    targets = {}
    for key, value in values.items():
        label, operator, limit = TARGETS[key]
        met = value >= limit if operator == ">=" else value <= limit
        targets[key] = {"label": label, "value": value, "target": f"{operator} {limit}", "met": met}
    return targets


def summarise(results: Results) -> None:
    log("\nratio to the ceiling (same gunicorn settings, same bytes, same run):")
    for row in results["endpoints"].values():
        label = row["path"] + (" (token)" if row["token"] else "")
        log(
            f"  {row['method']:4} {label:53} {row['ratio_to_ceiling']:6.1%}  "
            f"({row['requests_per_s_pooled']:.0f} of {row['ceiling']['requests_per_s_pooled']:.0f} req/s)"
        )
    floor = results["stamped_ceiling"]
    log(
        f"the ceiling with one stamp read per request: GET /people {floor['people']['ratio_to_ceiling']:.1%}, "
        f"GET /people/{{uuid}} {floor['detail']['ratio_to_ceiling']:.1%} of the ceiling"
    )
    posts = results["create_at_8_connections"]
    log(f"POST /people with a token at 8 connections: p50 {posts['p50_ms']} ms, p99 {posts['p99_ms']} ms (median run)")
    log("targets:")
    for target in results["targets"].values():
        verdict = "PASS" if target["met"] else "FAIL"
        log(f"  {verdict}  {target['label']}: {target['value']} (target {target['target']})")


def run(mode: str, output: Path, workers: int | None = None, threads: int | None = None) -> Results:
    settings = MODES[mode]
    # Smoke runs (CI, tests) may overlap on one machine: each gets its own databases and drops them.
    database = f"titanic_bench_smoke_{os.getpid()}" if mode == "smoke" else "titanic_bench"
    started = datetime.datetime.now(datetime.UTC)
    results: Results = {"started": started.isoformat(timespec="seconds"), "mode": mode, "machine": machine()}
    results["git"] = git_revision()
    gunicorn_env = {}
    if workers:
        gunicorn_env["GUNICORN_WORKERS"] = str(workers)
    if threads:
        gunicorn_env["GUNICORN_THREADS"] = str(threads)

    with tempfile.TemporaryDirectory(prefix="titanic-bench-") as tmp:
        workdir = Path(tmp)
        try:
            results.update(serve_and_measure(settings, database, workdir, gunicorn_env))
        finally:
            if mode == "smoke":
                drop_database(database)
        log("loadcsv at scale")
        results["loadcsv"] = loadcsv_scaling(settings["loadcsv_rows"], database, workdir)

    results["targets"] = judge(results)
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results["machine"]["load_average_at_end"] = os.getloadavg()  # other work on the machine skews absolute numbers
    summarise(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"results: {output}")
    return results
