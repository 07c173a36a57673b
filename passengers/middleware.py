import contextlib
import functools
import hashlib
import sys
import threading
from collections.abc import Callable
from typing import TypeGuard

from cachetools import LRUCache
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, resolve
from django.utils.cache import get_conditional_response
from django_prometheus.middleware import PrometheusAfterMiddleware

from passengers.hot_queries import Stamp, current_stamp, stamp_and_token_user

CACHED_VIEWS = {"people-list", "people-detail", "people-stats"}
# What an answer of those views can depend on, besides the path and query string (not who asks): the
# scheme (the server's, or X-Forwarded-Proto by SECURE_PROXY_SSL_HEADER), which decides the HTTPS
# redirect and HSTS; the script prefix and the host of its links (SERVER_* when there is no Host);
# and the representation asked for. Django reads no other forwarded header (USE_X_FORWARDED_HOST and
# _PORT are off): one it is made to read must be added here.
KEY_ENVIRON = (
    "wsgi.url_scheme",
    "HTTP_X_FORWARDED_PROTO",
    "SCRIPT_NAME",
    "HTTP_HOST",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_ACCEPT",
)
PROMETHEUS_AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"
# A kept response: its body and its headers.
Entry = tuple[bytes, list[tuple[str, str]]]


class CachedReadsMiddleware:
    """Answer repeated GETs of the passengers and the stats with the response the first one got.

    The first request goes through everything below this middleware (sessions, CSRF, DRF's
    authentication and content negotiation, filters, rendering, headers) and its whole response is
    kept under the dataset stamp (models.DatasetVersion) read before it ran; the same request then
    gets that response back (or a 304) without going through any of it: DRF's read throttle
    (titanic.api.throttling) counts only the renders. The database renews the stamp in the same transaction as
    every change to the passengers, however it is made, so the next read from any worker or pod
    renders afresh.

    The JSON answers are the same for every reader, so a request with a DRF token is answered from
    the same entries once the token is checked, in the same query as the stamp: a revoked token or a
    deactivated user goes the whole way, to DRF's 401. Requests with a cookie (the browsable API's
    session, its per-user HTML) always go the whole way. Responses are kept in this process, least
    recently used first out, within TITANIC_RESPONSE_CACHE_MB.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        if not settings.TITANIC_RESPONSE_CACHE_MB:
            raise MiddlewareNotUsed("TITANIC_RESPONSE_CACHE_MB is 0")
        self.get_response = get_response
        self.responses: LRUCache[bytes, Entry] = LRUCache(
            maxsize=settings.TITANIC_RESPONSE_CACHE_MB * 2**20, getsizeof=_size
        )
        self.lock = threading.Lock()
        # django-prometheus counts requests per view as the view is called, which a cached answer
        # never is: the same count, by the same code, for the answers given here.
        self.count_view = (
            PrometheusAfterMiddleware(get_response).process_view if PROMETHEUS_AFTER in settings.MIDDLEWARE else None
        )

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        reader = _reader(request) if self._cacheable(request) else None
        if reader is None:
            return self.get_response(request)
        stamp, user = reader
        key = _key(request, stamp)
        with self.lock:
            cached = self.responses.get(key)
        if cached is None:
            response = self.get_response(request)
            # Kept only if no change committed while it was rendered: it then shows the data of this stamp.
            if _reusable(response) and _current_stamp() == stamp:
                with self.lock, contextlib.suppress(ValueError):  # ValueError: larger than the whole cache
                    self.responses[key] = (response.content, list(response.items()))
            return response
        if user is not None:
            request.user = user  # the request log names the reader
        if self.count_view:
            self.count_view(request, None)
        content, headers = cached
        response = HttpResponse(content, headers=headers)
        return get_conditional_response(request, etag=response["ETag"], response=response) or response  # never None

    def _cacheable(self, request: HttpRequest) -> bool:
        meta = request.META
        if request.method != "GET" or meta.get("HTTP_COOKIE"):
            return False
        if meta.get("HTTP_AUTHORIZATION") and _token_key(request) is None:
            return False  # another scheme: DRF answers it
        match = _resolve(request.path_info)
        if match is None:
            return False
        request.resolver_match = match  # the metrics label cached answers by view, too
        return match.view_name in CACHED_VIEWS


@functools.lru_cache(maxsize=1024)
def _resolve(path: str) -> ResolverMatch | None:
    """Django's resolve() for the most recently asked paths, None for those it does not know (static
    files among them): walking the URL patterns costs as much as a tenth of a cached answer, and they
    do not change while the process serves."""
    try:
        return resolve(path)
    except Resolver404:
        return None


def _token_key(request: HttpRequest) -> str | None:
    """The key of an `Authorization: Token <key>` header (DRF's TokenAuthentication), else None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "token" and key and " " not in key else None


def _reader(request: HttpRequest) -> tuple[Stamp, User | None] | None:
    """(stamp, the token's active owner or None) when the request may be answered from the cache, else None."""
    key = _token_key(request)
    try:
        if key is None:
            stamp = current_stamp()
            return None if stamp is None else (stamp, None)
        found = stamp_and_token_user(key)
    except DatabaseError:
        return None  # the view reports it, as a 503
    if found is None or found[1] is None:
        return None  # no stamp row; or an unknown token or inactive user: DRF answers 401
    return found


def _current_stamp() -> Stamp | None:
    try:
        return current_stamp()
    except DatabaseError:
        return None


def _key(request: HttpRequest, stamp: Stamp) -> bytes:
    meta = request.META
    varies = (stamp, request.path_info, meta.get("QUERY_STRING", ""), *(meta.get(name) for name in KEY_ENVIRON))
    return hashlib.sha256(repr(varies).encode()).digest()  # a few bytes, however long the headers


KEY_BYTES = sys.getsizeof(bytes(32))


def _size(entry: Entry) -> int:
    """What an entry and its key take in memory, the objects' own overhead included."""
    content, headers = entry
    texts = [text for pair in headers for text in pair]
    return KEY_BYTES + sum(map(sys.getsizeof, (entry, content, headers, *headers, *texts)))


def _reusable(response: HttpResponseBase) -> TypeGuard[HttpResponse]:
    vary = {header.strip().lower() for header in response.get("Vary", "").split(",") if header.strip()}
    return (
        response.status_code == 200
        and response.get("Content-Type") == "application/json"
        and isinstance(response, HttpResponse)  # not streamed
        and not response.cookies
        and "ETag" in response
        and vary <= {"accept", "cookie"}  # cookie: only requests without any are cached
    )
