"""The ceiling of the benchmark: a bare WSGI app that answers with bytes captured from the real API.

It runs under the same gunicorn config as the service, so the difference between the two is what
Django, DRF, the middleware and the database cost. BENCH_CEILING_MAP names a JSON file mapping
"METHOD path?query" to {"status": 200, "file": "<path of the body>"}.

With BENCH_CEILING_STAMP_URL (a PostgreSQL URL) it first reads the dataset stamp, as the service
does before every cached answer: the most that any answer kept fresh by a per-request check can reach.
"""

import json
import os
from pathlib import Path

import psycopg

ROUTES = {
    key: (f"{route['status']} X", Path(route["file"]).read_bytes())
    for key, route in json.loads(Path(os.environ["BENCH_CEILING_MAP"]).read_text()).items()
}
STAMP_URL = os.environ.get("BENCH_CEILING_STAMP_URL")
_database: list[psycopg.Connection] = []  # a connection per worker, opened by its first request (after the fork)


def application(environ, start_response):
    if STAMP_URL:
        if not _database:
            _database.append(psycopg.connect(STAMP_URL, autocommit=True))
        _database[0].execute("SELECT stamp FROM passengers_datasetversion WHERE id = 1", prepare=True).fetchone()
    query = environ.get("QUERY_STRING")
    status, body = ROUTES[f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}" + (f"?{query}" if query else "")]
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    if environ.get("wsgi.input"):
        environ["wsgi.input"].read()  # a POST's body, as the real app reads it
    return [body]
