import sys

from csp.decorators import csp_update
from django.conf import settings
from django.core.exceptions import BadRequest
from django.db import OperationalError
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularRedocView
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse


@extend_schema(
    summary="Welcome",
    tags=["service"],
    responses=inline_serializer(
        "Welcome",
        {
            "message": serializers.CharField(),
            "version": serializers.CharField(),
            "commit": serializers.CharField(),
            "people": serializers.URLField(),
            "stats": serializers.URLField(),
            "docs": serializers.URLField(),
            "redoc": serializers.URLField(),
            "schema": serializers.URLField(),
        },
    ),
)
@api_view(["GET"])
@permission_classes([AllowAny])
def welcome(request):
    return Response(
        {
            "message": "Welcome to the Titanic API",
            "version": settings.TITANIC_VERSION,
            "commit": settings.TITANIC_COMMIT,
            "people": reverse("people-list", request=request),
            "stats": reverse("people-stats", request=request),
            "docs": reverse("swagger-ui", request=request),
            "redoc": reverse("redoc", request=request),
            "schema": reverse("schema", request=request),
        }
    )


class OfflineRedocView(SpectacularRedocView):
    """Redoc from the sidecar assets only: no web fonts, and the bundle's remote logo is blocked (by
    the site's Content-Security-Policy, plus the <style> elements and the blob: worker Redoc makes)."""

    template_name = "api_docs/redoc.html"

    @extend_schema(exclude=True)
    @method_decorator(csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]}))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _error_handler(status, detail):
    def handler(request, exception=None):
        return JsonResponse({"detail": detail}, status=status)

    return handler


def bad_request(request, exception=None):
    """handler400: what the project's own BadRequest says; Django's other 400s (a Host not allowed,
    too many form fields, ...) stay generic."""
    detail = str(exception) if isinstance(exception, BadRequest) and str(exception) else "Bad request."
    return JsonResponse({"detail": detail}, status=400)


permission_denied = _error_handler(403, "You do not have permission to perform this action.")
not_found = _error_handler(404, "Not found.")
RETRY_AFTER_SECONDS = 5


def server_error(request):
    """handler500, for any view, middleware or authentication: 503 with Retry-After when the error
    is the database being unreachable, full or too slow (OperationalError: connection refused or
    lost, connect timeout, too many clients, statement timeout), else 500."""
    if isinstance(sys.exc_info()[1], OperationalError):
        response = JsonResponse({"detail": "The database is unavailable; try again shortly."}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"detail": "Internal server error."}, status=500)
