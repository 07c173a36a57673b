from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from passengers.views import PassengerViewSet
from titanic.views import OfflineRedocView, welcome

admin.site.site_header = admin.site.site_title = settings.TITANIC_SERVICE_NAME
admin.site.index_title = "Titanic API administration"

router = SimpleRouter()
router.trailing_slash = "/?"  # the contract's paths work with and without a trailing slash
router.register("people", PassengerViewSet, basename="people")

# What answers a request before and after these URLs, layer by layer: docs/architecture.md.
urlpatterns = [
    path("", welcome, name="welcome"),
    path("", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api_docs/swagger_ui.html"),
        name="swagger-ui",
    ),
    path("api/redoc/", OfflineRedocView.as_view(url_name="schema"), name="redoc"),
    # DRF's login view and URL, with the service's name on the page.
    path(
        "api-auth/login/",
        LoginView.as_view(
            template_name="titanic/api_login.html", extra_context={"service_name": settings.TITANIC_SERVICE_NAME}
        ),
    ),
    path("api-auth/", include("rest_framework.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "titanic.views.bad_request"
handler403 = "titanic.views.permission_denied"
handler404 = "titanic.views.not_found"
handler500 = "titanic.views.server_error"
