import logging

from django.db import OperationalError
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("titanic.api")


def exception_handler(exc, context):
    """DRF's handler, plus a log line for failed authentication and a 503 when the database is down."""
    request = context["request"]
    if isinstance(exc, AuthenticationFailed | NotAuthenticated):
        logger.warning(
            "authentication failed: %s",
            exc.detail,
            extra={"method": request.method, "path": request.path, "client": request.META.get("REMOTE_ADDR")},
        )
    if isinstance(exc, OperationalError):
        logger.error("database unavailable", exc_info=exc)
        return Response(
            {"detail": "The database is unavailable; try again shortly."}, status.HTTP_503_SERVICE_UNAVAILABLE
        )
    return drf_exception_handler(exc, context)
