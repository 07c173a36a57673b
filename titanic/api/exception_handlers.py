import logging

from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("titanic.api")


def exception_handler(exc, context):
    """DRF's handler, plus a log line for failed authentication (database errors: titanic.views.server_error)."""
    request = context["request"]
    if isinstance(exc, AuthenticationFailed | NotAuthenticated):
        logger.warning(
            "authentication failed: %s",
            exc.detail,
            extra={"method": request.method, "path": request.path, "client": request.META.get("REMOTE_ADDR")},
        )
    return drf_exception_handler(exc, context)
