import contextlib
import functools
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.cache import patch_cache_control

from titanic.logging import request_id_var

logger = logging.getLogger("titanic.request")
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
GetResponse = Callable[[HttpRequest], HttpResponseBase]


class RequestLogMiddleware:
    """Gives each request an id (X-Request-ID when well-formed, else a new one) and logs one line for it."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            user = getattr(request, "user", None)
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user": user.get_username() if user is not None and user.is_authenticated else None,
                    "client": request.META.get("REMOTE_ADDR"),
                    "forwarded_for": request.headers.get("X-Forwarded-For"),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class RequestBodyMiddleware:
    """Refuse a body before any of it is read when it is larger than TITANIC_MAX_BODY_BYTES (413; the
    admin gets Django's limit), its Content-Length is not a number (400), or its charset cannot turn
    bytes into text (415): the codecs that are not text encodings (base64, rot13, zlib, ...) and idna,
    punycode and undefined, on which Django's multipart parser and DRF's form parser raise (a 500)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
        if length > settings.TITANIC_MAX_BODY_BYTES and not request.path_info.startswith("/" + settings.ADMIN_URL):
            return JsonResponse(
                {"detail": f"Request body too large: {length} bytes, the limit is {settings.TITANIC_MAX_BODY_BYTES}."},
                status=413,
            )
        # Django sets the encoding from the Content-Type's charset when Python knows the name.
        if request.encoding and not _decodes_text(request.encoding):
            return JsonResponse({"detail": f'Unsupported charset "{request.encoding}".'}, status=415)
        return self.get_response(request)


@functools.lru_cache(maxsize=64)
def _decodes_text(charset: str) -> bool:
    try:
        "".encode(charset)  # LookupError for a codec that is not a text encoding
        # idna, punycode and undefined ignore the error handler: each byte value once is enough to raise.
        bytes(range(256)).decode(charset, "replace")
    except (LookupError, UnicodeError):
        return False
    return True


class KnownMethodsMiddleware:
    """Answer 405 to a method the service does not implement, above django-prometheus's middleware,
    which labels its latency histogram with the raw method: each new name would add about 19 series."""

    METHODS = frozenset(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    ALLOW = ", ".join(sorted(METHODS))

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.method in self.METHODS:
            return self.get_response(request)
        response = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
        response["Allow"] = self.ALLOW
        return response


class PrivateCacheControlMiddleware:
    """Cache-Control: private on every answer to a request with credentials (a token or any cookie),
    cached or rendered, so that no shared cache between the client and the service keeps it."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.headers.get("authorization") or request.headers.get("cookie"):
            patch_cache_control(response, private=True)
        return response


class InternalEndpointsMiddleware:
    """Serve /health, /ready and /metrics before host validation and HTTPS redirects.

    The kubelet and Prometheus call the pod IP over plain HTTP, which ALLOWED_HOSTS and
    SECURE_SSL_REDIRECT would otherwise turn into 400s and 301s.
    """

    def __init__(self, get_response: GetResponse) -> None:
        from titanic.probes import internal_views

        self.get_response = get_response
        self.views = internal_views()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        view = self.views.get(request.path_info)
        return view(request) if view else self.get_response(request)


class DatabaseDeadlineMiddleware:
    """Cut the database connection of a request still running DATABASE_REQUEST_TIMEOUT seconds after
    it started, so that a query stuck in the network fails at once: 503 (titanic.views.server_error).

    statement_timeout bounds a statement's time in the server (execution and lock waits) and
    connect_timeout each connection attempt, but nothing bounds the wait for an answer that the
    network delays or loses (a slow link, a failed-over host that drops packets): psycopg waits on
    its socket without a timeout. One watchdog thread per process shuts down that socket; the
    blocked call then raises OperationalError and Django's health check replaces the connection
    for the next request. Measured in tests/test_faults.py, explained in docs/reliability.md.
    """

    POLL_SECONDS = 0.25  # how late past its deadline a request may be cut

    def __init__(self, get_response: GetResponse) -> None:
        if not settings.DATABASE_REQUEST_TIMEOUT:
            raise MiddlewareNotUsed("DATABASE_REQUEST_TIMEOUT is 0")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        _watchdog.ensure_running(self.POLL_SECONDS)
        entry = (time.monotonic() + settings.DATABASE_REQUEST_TIMEOUT, connections[DEFAULT_DB_ALIAS])
        thread = threading.get_ident()
        with _watchdog.lock:
            _watchdog.requests[thread] = entry
        try:
            return self.get_response(request)
        finally:
            with _watchdog.lock:
                _watchdog.requests.pop(thread, None)


class _Watchdog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[int, tuple[float, BaseDatabaseWrapper]] = {}  # thread id -> (deadline, its connection)
        self.pid: int | None = None

    def ensure_running(self, interval: float) -> None:
        if self.pid != os.getpid():  # once per process, after gunicorn's fork
            self.pid = os.getpid()
            threading.Thread(target=self._watch, args=(interval,), name="db-deadline", daemon=True).start()

    def _watch(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            now = time.monotonic()
            with self.lock:
                for thread, (deadline, wrapper) in list(self.requests.items()):
                    if deadline <= now:
                        del self.requests[thread]  # cut once
                        _shut_down(wrapper.connection)


def _shut_down(database_connection: Any) -> None:
    """Shut down a psycopg connection's socket (not close: the fd stays the connection's own)."""
    if database_connection is None or not hasattr(database_connection, "fileno") or database_connection.closed:
        return
    with (
        contextlib.suppress(OSError),
        socket.fromfd(database_connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as s,
    ):
        s.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()
