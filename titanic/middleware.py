import logging
import re
import time
import uuid

from django.conf import settings
from django.http import JsonResponse

from titanic.logging import request_id_var

logger = logging.getLogger("titanic.request")
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestLogMiddleware:
    """Gives each request an id (X-Request-ID when well-formed, else a new one) and logs one line for it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
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


class BodySizeLimitMiddleware:
    """Answer 413 before reading a body larger than TITANIC_MAX_BODY_BYTES (the admin gets Django's limit)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
        if length > settings.TITANIC_MAX_BODY_BYTES and not request.path_info.startswith("/" + settings.ADMIN_URL):
            return JsonResponse(
                {"detail": f"Request body too large: {length} bytes, the limit is {settings.TITANIC_MAX_BODY_BYTES}."},
                status=413,
            )
        return self.get_response(request)


class InternalEndpointsMiddleware:
    """Serve /health, /ready and /metrics before host validation and HTTPS redirects.

    The kubelet and Prometheus call the pod IP over plain HTTP, which ALLOWED_HOSTS and
    SECURE_SSL_REDIRECT would otherwise turn into 400s and 301s.
    """

    def __init__(self, get_response):
        from titanic.probes import internal_views

        self.get_response = get_response
        self.views = internal_views()

    def __call__(self, request):
        view = self.views.get(request.path_info)
        return view(request) if view else self.get_response(request)
