"""Settings for the Titanic API, read from the environment (see .env.example)."""

import os
from pathlib import Path

import environ

from titanic import __version__
from titanic.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY") if not DEBUG else env("DJANGO_SECRET_KEY", default="django-insecure-local-only")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# What this build is: docker/Dockerfile bakes both in from its build arguments (a vX.Y.Z tag's
# version, the commit SHA); a checkout reports the package version and an unknown commit.
TITANIC_VERSION = env("TITANIC_VERSION", default=__version__)
TITANIC_SERVICE_NAME = f"Titanic API {TITANIC_VERSION}"  # on the browsable API, its login and the admin
TITANIC_COMMIT = env("TITANIC_COMMIT", default="unknown")
TITANIC_ANONYMOUS_WRITES = env.bool("TITANIC_ANONYMOUS_WRITES", default=False)
TITANIC_MAX_BODY_BYTES = env.int("TITANIC_MAX_BODY_BYTES", default=64 * 1024)
TITANIC_RESPONSE_CACHE_MB = env.int("TITANIC_RESPONSE_CACHE_MB", default=16)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "titanic",  # project-wide: management commands (dbroles), the lockout's receivers, templates
    "passengers",
    "titanic.idempotency",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "titanic.middleware.RequestLogMiddleware",
    "titanic.middleware.DatabaseDeadlineMiddleware",
    "titanic.middleware.InternalEndpointsMiddleware",
    "titanic.middleware.RequestBodyMiddleware",
    # Above the metrics that label requests by method: no other method reaches them (docs/security.md).
    "titanic.middleware.KnownMethodsMiddleware",
    # Above the cache, so that cached answers are counted (by view) like the others.
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Above the cache, so that cached answers to a token get it too.
    "titanic.middleware.PrivateCacheControlMiddleware",
    # Above the layers whose work is the same for every cached answer: the security headers are kept
    # with it, a redirect to HTTPS is never kept, and static files are not passenger reads.
    "passengers.middleware.CachedReadsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Below the cache: the policy is kept with a cached answer, not built for each one.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "titanic.urls"
WSGI_APPLICATION = "titanic.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Instrumented backends (query counts and timings in /metrics); PostgreSQL's with a cheaper health check.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
if DATABASES["default"]["ENGINE"] == "django_prometheus.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "titanic.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=2)
    # Server-side: counts execution and lock waits, not network latency (docs/reliability.md).
    statement_timeout_ms = round(env.float("DATABASE_STATEMENT_TIMEOUT", default=5) * 1000)
    options["options"] = f"{options.get('options', '')} -c statement_timeout={statement_timeout_ms}".strip()
# RDS IAM authentication: DATABASE_URL has no password; every new connection gets a token signed with
# the AWS credentials of the pod (titanic/postgresql/iam.py). A wrong configuration stops the start.
if env.bool("DATABASE_IAM_AUTH", default=False):
    from titanic.postgresql.iam import connection_options

    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connection_options(DATABASES["default"], region=env("AWS_REGION", default=""))
    )
# Wall-clock seconds after which a request's database connection is cut (503); 0: never.
DATABASE_REQUEST_TIMEOUT = env.float("DATABASE_REQUEST_TIMEOUT", default=10)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://titanic")}

AUTHENTICATION_BACKENDS = [
    # Refuses (400) and counts an over-long username before anything else looks at it (titanic.lockout).
    "titanic.lockout.UsernameLengthBackend",
    # Refuses a locked-out login before the password is checked (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Login lockout (admin and browsable-API login; API tokens are not passwords and are not
# counted): after AXES_FAILURE_LIMIT failures for one username, or from one client address,
# further attempts are refused with 429 for DJANGO_LOGIN_LOCKOUT_HOURS. Attempts live in the
# database, so every pod sees them. How an operator unlocks: docs/operations.md, "Unlocking a login".
AXES_ENABLED = env.bool("DJANGO_AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("DJANGO_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("DJANGO_LOGIN_LOCKOUT_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Not axes' reset: it deletes every failure matching the username OR the address, so any valid login
# (a user with no permissions at all) would clear the address's guesses at the admin's password.
# titanic.lockout clears only the failures recorded against the username that logged in.
AXES_RESET_ON_SUCCESS = False
# A refused attempt while locked out is still a failure: it restarts the cool-off, so a client that
# keeps guessing stays locked out (axes' default, stated because docs/operations.md relies on it).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_CLIENT_IP_CALLABLE = "titanic.clients.client_ip"
# Proxies in front of the app that append the peer they saw to X-Forwarded-For (the ALB: 1): the
# client address of the lockout and the throttles (titanic.clients). Nothing else reads the header.
TITANIC_TRUSTED_PROXIES = env.int("TITANIC_TRUSTED_PROXIES", default=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

ADMIN_URL = env("DJANGO_ADMIN_URL", default="admin/")

# Security: TLS is terminated at the load balancer, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
X_FRAME_OPTIONS = "DENY"
# What the browsable API, the admin and Swagger UI need, all served from here (docs/security.md);
# Redoc adds what its bundle needs (titanic.views.OfflineRedocView). tests/test_browser.py loads
# each page in Chromium and fails on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],  # style="" attributes in DRF's and the admin's templates
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["titanic.api.permissions.ModelPermissionsOrAnonymousWrites"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "titanic.api.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "titanic.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "titanic.api.exception_handlers.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["titanic.api.throttling.ReadRateThrottle", "titanic.api.throttling.WriteRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": env("TITANIC_READ_THROTTLE_RATE", default="120/min"),
        "write": env("TITANIC_WRITE_THROTTLE_RATE", default="120/min"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Titanic API",
    "DESCRIPTION": "The Titanic passenger list. Reads are public; writes need a token "
    "(`Authorization: Token <key>`) of a user holding the matching passenger permission.",
    "VERSION": TITANIC_VERSION,
    "EXTENSIONS_INFO": {"x-commit": TITANIC_COMMIT},
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["titanic.api.schema.contract_paths"],
}

# Prometheus multiprocess mode (gunicorn sets it for the server); one-off commands given the same
# variable need the directory to exist too.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

LOGGING = logging_config(env("LOG_FORMAT", default="text"), env("LOG_LEVEL", default="INFO"))
