from django.conf import settings
from rest_framework import renderers


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's page under the Content-Security-Policy (docs/security.md), which allows no inline script
    or style element: a logout without an onclick attribute (the template), and without the <style>
    of Pygments' colours that DRF adds when Pygments is installed. Its title and brand name the
    service and its version."""

    template = "titanic/browsable_api.html"

    def get_context(self, *args, **kwargs):
        context = super().get_context(*args, **kwargs)
        context["code_style"] = None
        context["service_name"] = settings.TITANIC_SERVICE_NAME
        return context
