from django.conf import settings
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    """Answer 413 before reading a body larger than TITANIC_MAX_BODY_BYTES (the admin gets Django's limit)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
        if length > settings.TITANIC_MAX_BODY_BYTES and not request.path_info.startswith("/" + settings.ADMIN_URL):
            return JsonResponse(
                {"detail": f"Request body too large: {length} bytes, the limit is {settings.TITANIC_MAX_BODY_BYTES}."},
                status=413,
            )
        return self.get_response(request)
