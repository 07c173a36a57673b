import contextlib
import hashlib
import sys
import threading

from cachetools import LRUCache
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import cc_delim_re, get_conditional_response

from passengers.models import DatasetVersion

CACHED_VIEWS = {"people-list", "people-detail", "people-stats"}
# What an anonymous answer of those views can depend on, besides the path and query string.
KEY_HEADERS = ("HTTP_HOST", "HTTP_X_FORWARDED_PROTO", "HTTP_ACCEPT")
CREDENTIALS = ("HTTP_AUTHORIZATION", "HTTP_COOKIE")


class CachedReadsMiddleware:
    """Answer repeated anonymous GETs of the passengers and the stats with the response the first one got.

    The first request goes through everything below this middleware (sessions, CSRF, DRF's
    authentication and content negotiation, filters, rendering, headers) and its whole response is
    kept under the dataset stamp (models.DatasetVersion) read before it ran; the same request then
    gets that response back (or a 304) without going through any of it (a throttle on reads would
    have to sit above this middleware). The database renews the stamp in the same transaction as
    every change to the passengers, however it is made, so the next read from any worker or pod
    renders afresh.

    Requests with credentials always go the whole way: a bad token is a 401 even on a GET.
    Responses are kept in this process, least recently used first out, within
    TITANIC_RESPONSE_CACHE_MB.
    """

    def __init__(self, get_response):
        if not settings.TITANIC_RESPONSE_CACHE_MB:
            raise MiddlewareNotUsed("TITANIC_RESPONSE_CACHE_MB is 0")
        self.get_response = get_response
        self.responses = LRUCache(maxsize=settings.TITANIC_RESPONSE_CACHE_MB * 2**20, getsizeof=_size)
        self.lock = threading.Lock()

    def __call__(self, request):
        stamp = _current_stamp() if self._cacheable(request) else None
        if stamp is None:
            return self.get_response(request)
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
        content, headers = cached
        response = HttpResponse(content, headers=headers)
        return get_conditional_response(request, etag=response["ETag"], response=response)

    def _cacheable(self, request):
        if request.method != "GET" or any(request.META.get(name) for name in CREDENTIALS):
            return False
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        request.resolver_match = match  # the metrics label cached answers by view, too
        return match.view_name in CACHED_VIEWS


def _current_stamp():
    try:
        return DatasetVersion.current()
    except DatabaseError:
        return None  # the view reports it, as a 503


def _key(request, stamp):
    meta = request.META
    varies = (stamp, request.path_info, meta.get("QUERY_STRING", ""), *(meta.get(name) for name in KEY_HEADERS))
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
