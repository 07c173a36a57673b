from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from titanic.clients import client_ip


class _PerClientThrottle(SimpleRateThrottle):
    """Counts per user, or per client address for anonymous requests (titanic.clients: the address
    the trusted proxies saw, never the whole X-Forwarded-For, which DRF's own get_ident would use
    and any client could vary)."""

    def counts(self, request):
        raise NotImplementedError

    def get_cache_key(self, request, view):
        if not self.counts(request):
            return None
        ident = request.user.pk if request.user.is_authenticated else client_ip(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ReadRateThrottle(_PerClientThrottle):
    """Limits the reads one client makes the service render. A cached answer never reaches DRF
    (passengers.middleware), so only renders count: a new query string, a cookie, the browsable API."""

    scope = "read"

    def counts(self, request):
        return request.method in SAFE_METHODS


class WriteRateThrottle(_PerClientThrottle):
    """Limits writes per user (or per client address when anonymous writes are on)."""

    scope = "write"

    def counts(self, request):
        return request.method not in SAFE_METHODS
