"""gunicorn settings for a 2-vCPU pod with a read-only root filesystem.

Start with: gunicorn --config titanic/gunicorn.conf.py titanic.wsgi
"""

import logging
import os
import shutil

# Prometheus multiprocess mode: every worker writes its samples here and /metrics merges them.
# Set before prometheus_client is imported: it picks its storage at import time.
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus-multiproc")  # noqa: S108 (the pod's own emptyDir)

from prometheus_client import multiprocess  # noqa: E402

import titanic.probes  # noqa: E402,F401  (readiness state shared by the workers forked from here)
from titanic.logging import logging_config  # noqa: E402

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# One thread per worker: requests are CPU-bound in Python, and with 4 threads they queued for
# the GIL (p99 at 8 connections mostly 25-35 ms instead of 9-16 ms, docs/performance.md).
# gthread still keeps idle keep-alive connections without holding the thread.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread"
worker_tmp_dir = "/dev/shm"  # noqa: S108 (heartbeat files in memory; the root filesystem is read-only)
timeout = 30
# Must be less than the pod's terminationGracePeriodSeconds (50) minus its preStop sleep (25);
# the chain is in kustomize/README.md and tests/test_kustomize.py checks it.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Longer than the ALB's idle timeout (60 s, set on the Ingress): the ALB closes an idle connection
# first, so gunicorn never closes one the ALB is sending a request on (a 502). Tested from the files.
keepalive = 75
# Recycle workers now and then as a guard against slow leaks, but rarely: a restart costs about a
# second of CPU (importing Django) and empties the worker's cache. At 2000 a loaded worker
# restarted every few seconds, at 50,000 about once a minute (docs/performance.md); at 500,000 a
# worker at full load (~800 requests/s) restarts every ten minutes or so.
max_requests = 500000
max_requests_jitter = 50000
control_socket_disable = True  # it would be written to the read-only working directory
# gunicorn derives nothing from forwarding headers, whoever the peer. By default it trusts 127.0.0.1,
# which behind a sidecar or any same-host proxy is every client, to set the scheme with
# X-Forwarded-Proto, -Protocol or -Ssl and SCRIPT_NAME (the prefix of every link) with a header.
# The ALB sets X-Forwarded-Proto, which Django reads (SECURE_PROXY_SSL_HEADER), and X-Forwarded-For,
# which titanic.clients reads; nothing else is honoured (docs/security.md).
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""
accesslog = None  # titanic.middleware.RequestLogMiddleware writes one line per request
# Nothing in the log formats uses the calling thread, process or source line: no record collects them
# (the Python logging HOWTO, "Optimization"). Measured: 77,000 fewer instructions per cached read, about
# 6 % of one (docs/performance.md, "The request log").
logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
logging._srcfile = None
logconfig_dict = logging_config(os.environ.get("LOG_FORMAT", "text"), os.environ.get("LOG_LEVEL", "INFO"))


def on_starting(server):
    """Start every server with empty metrics; the directory may be a mount point (emptyDir)."""
    os.makedirs(metrics_dir, exist_ok=True)
    for entry in os.scandir(metrics_dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
