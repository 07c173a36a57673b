"""Benchmark the API under gunicorn with wrk, against a bare-WSGI ceiling measured in the same run.

    .venv/bin/python -m bench            # full run, a few minutes (make bench)
    .venv/bin/python -m bench --smoke    # seconds per endpoint, to keep the harness working

Everything goes to loopback and stops by itself. Results: bench-results/bench-<timestamp>.json
(or --output). docs/performance.md explains the method and records a full run.

- run: the run from start to end (database, servers, endpoints, memory, loadcsv, targets);
- wrk: one wrk run, and the ways runs are combined (against the ceiling, for latency);
- loadcsv: manage.py loadcsv timed at growing sizes;
- ceiling: the bare WSGI app.
"""


def log(message: str) -> None:
    print(message, flush=True)
