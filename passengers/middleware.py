import contextlib
import functools
import hashlib
import sys
import threading

from cachetools import LRUCache
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import cc_delim_re, get_conditional_response
from django_prometheus.middleware import PrometheusAfterMiddleware
from rest_framework.authtoken.models import Token

from passengers.models import DatasetVersion, stamp_cursor

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

    def __init__(self, get_response):
        if not settings.TITANIC_RESPONSE_CACHE_MB:
            raise MiddlewareNotUsed("TITANIC_RESPONSE_CACHE_MB is 0")
        self.get_response = get_response
        self.responses = LRUCache(maxsize=settings.TITANIC_RESPONSE_CACHE_MB * 2**20, getsizeof=_size)
        self.lock = threading.Lock()
        # django-prometheus counts requests per view as the view is called, which a cached answer
        # never is: the same count, by the same code, for the answers given here.
        self.count_view = (
            PrometheusAfterMiddleware(get_response).process_view if PROMETHEUS_AFTER in settings.MIDDLEWARE else None
        )

    def __call__(self, request):
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
        return get_conditional_response(request, etag=response["ETag"], response=response)

    def _cacheable(self, request):
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
def _resolve(path):
    """Django's resolve() for the most recently asked paths, None for those it does not know (static
    files among them): walking the URL patterns costs as much as a tenth of a cached answer, and they
    do not change while the process serves."""
    try:
        return resolve(path)
    except Resolver404:
        return None


def _token_key(request):
    """The key of an `Authorization: Token <key>` header (DRF's TokenAuthentication), else None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "token" and key and " " not in key else None


def _reader(request):
    """(stamp, the token's active owner or None) when the request may be answered from the cache, else None."""
    key = _token_key(request)
    try:
        if key is None:
            stamp = DatasetVersion.current()
            return None if stamp is None else (stamp, None)
        with stamp_cursor() as cursor:
            cursor.execute(_stamp_and_token_owner_sql(), [key])
            row = cursor.fetchone()
    except DatabaseError:
        return None  # the view reports it, as a 503
    if row is None or row[1] is None:
        return None  # no stamp row; or an unknown token or inactive user: DRF answers 401
    stamp, user_id, username = row
    return stamp, get_user_model()(pk=user_id, username=username, is_active=True)


def _current_stamp():
    try:
        return DatasetVersion.current()
    except DatabaseError:
        return None


def _column(meta, name):
    return f"{meta.db_table}.{meta.get_field(name).column}"


@functools.cache
def _stamp_and_token_owner_sql():
    """The stamp and the active owner of a token, in one indexed query: a credentialed cached read
    costs the same round trip as an anonymous one."""
    version, token, user = DatasetVersion._meta, Token._meta, get_user_model()._meta
    return (
        f"SELECT {_column(version, 'stamp')}, {_column(user, 'id')}, {_column(user, 'username')}"
        f" FROM {version.db_table}"
        f" LEFT JOIN {token.db_table} ON {_column(token, 'key')} = %s"
        f" LEFT JOIN {user.db_table} ON {_column(user, 'id')} = {_column(token, 'user')}"
        f" AND {_column(user, 'is_active')}"
        f" WHERE {_column(version, 'id')} = 1"
    )


def _key(request, stamp):
    meta = request.META
    varies = (stamp, request.path_info, meta.get("QUERY_STRING", ""), *(meta.get(name) for name in KEY_ENVIRON))
    return hashlib.sha256(repr(varies).encode()).digest()  # a few bytes, however long the headers


KEY_BYTES = sys.getsizeof(bytes(32))


def _size(entry):
    """What an entry and its key take in memory, the objects' own overhead included."""
    content, headers = entry
    texts = [text for pair in headers for text in pair]
    return KEY_BYTES + sum(map(sys.getsizeof, (entry, content, headers, *headers, *texts)))


def _reusable(response):
    vary = {header.lower() for header in cc_delim_re.split(response.get("Vary", "")) if header}
    return (
        response.status_code == 200
        and response.get("Content-Type") == "application/json"
        and not response.streaming
        and not response.cookies
        and "ETag" in response
        and vary <= {"accept", "cookie"}  # cookie: only requests without any are cached
    )
