"""Where a cached read's time goes: instructions per request, counted by callgrind, with the layers of
the middleware taken out one at a time.

    python -m bench.profile [--requests N]   (make bench-profile)

Each variant runs the app in one process (Django's WSGI handler, the production settings and
logging, PostgreSQL) under `valgrind --tool=callgrind`, twice: a warm-up plus N reads, and a warm-up
plus 2N. The difference of the two totals over N is what one more cached read costs this process,
whatever else the machine is doing (the database server's own work is not counted). Wall-clock
figures on these machines swing by a factor of two from one second to the next; these do not.
"""

import argparse
import concurrent.futures
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import log
from tests.harness import REPO, project_env, tool_path
from tests.harness.postgres import create_token, drop_database, load_dataset, psql

DATABASE = "titanic_bench_profile"
WARM_UP = 300
# name: (what the read sends, the middleware left out)
VARIANTS = {
    "anonymous read": ("anonymous", ()),
    "token read": ("token", ()),
    "without django-prometheus": ("anonymous", ("django_prometheus.middleware.",)),
    "without the request log": ("anonymous", ("titanic.middleware.RequestLogMiddleware",)),
    "without the request deadline": ("anonymous", ("titanic.middleware.DatabaseDeadlineMiddleware",)),
}


def serve_reads(reads: int, path: str, token: str | None, leave_out: list[str]) -> None:
    """In the child: the app as gunicorn loads it, answering `reads` GETs of `path` after a warm-up."""
    gunicorn_config = runpy.run_path(str(REPO / "titanic" / "gunicorn.conf.py"))
    import logging.config

    import django
    from django.conf import settings

    django.setup()
    logging.config.dictConfig(gunicorn_config["logconfig_dict"])  # the lines go to stdout, which the parent drops
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if not name.startswith(tuple(leave_out))]
    from django.core.handlers.wsgi import WSGIHandler

    application = WSGIHandler()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "HTTP_X_FORWARDED_PROTO": "https",  # as the load balancer sends it
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    statuses = set()

    def start_response(status, headers, exc_info=None):
        statuses.add(status)

    for _ in range(WARM_UP + reads):
        body = application({**environ, "wsgi.input": io.BytesIO()}, start_response)
        b"".join(body)
        body.close()
    if statuses != {"200 OK"}:
        sys.exit(f"answered {statuses}, not only 200 OK")


def profile_env(database_url: str) -> dict[str, str]:
    """The production settings, with the database timeouts stretched for an app that valgrind runs
    about fifty times slower (their values change nothing on a read that does not reach them)."""
    timeouts = {
        name: "600" for name in ("DATABASE_CONNECT_TIMEOUT", "DATABASE_STATEMENT_TIMEOUT", "DATABASE_REQUEST_TIMEOUT")
    }
    return project_env(DATABASE_URL=database_url, DJANGO_ALLOWED_HOSTS="127.0.0.1", LOG_FORMAT="json", **timeouts)


def instructions(reads: int, path: str, token: str | None, leave_out: tuple[str, ...], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory(prefix="titanic-profile-") as tmp:
        output, metrics = Path(tmp) / "callgrind.out", Path(tmp) / "metrics"
        metrics.mkdir()
        child = [sys.executable, "-m", "bench.profile", "--serve", json.dumps([reads, path, token, list(leave_out)])]
        command = [tool_path("valgrind"), "--tool=callgrind", f"--callgrind-out-file={output}", *child]
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"the profiled app failed: {run.stderr[-3000:]}")
        totals = [line for line in output.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
        return int(totals[0].split()[1])


def per_read(requests: int, path: str, token: str | None, leave_out: tuple[str, ...], env: dict[str, str]) -> int:
    """What one more cached read costs: the difference between 2N reads and N, over N."""
    longer, shorter = (instructions(reads, path, token, leave_out, env) for reads in (2 * requests, requests))
    return (longer - shorter) // requests


def profile(requests: int) -> dict[str, int]:
    log(f"preparing database {DATABASE}")
    url = load_dataset(DATABASE)
    try:
        token = create_token(url, "profile-reader")
        path = "/people/" + psql("SELECT uuid FROM passengers_passenger ORDER BY uuid LIMIT 1", database=DATABASE)
        env = profile_env(url)
        log(f"callgrind: {len(VARIANTS)} variants, {requests} and {2 * requests} reads of {path} each")
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            futures = {
                name: pool.submit(per_read, requests, path, token if reader == "token" else None, leave_out, env)
                for name, (reader, leave_out) in VARIANTS.items()
            }
            results = {name: future.result() for name, future in futures.items()}
    finally:
        drop_database(DATABASE)
    whole = results["anonymous read"]
    for name, count in results.items():
        share = "" if name in ("anonymous read", "token read") else f"  ({(whole - count) / whole:.0%} of a read)"
        log(f"  {name:30} {count:>10,} instructions per read{share}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="N (default 500; each variant takes minutes)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_reads(*json.loads(args.serve))
    else:
        profile(args.requests)


if __name__ == "__main__":
    main()
