"""Settings shared by every environment. Everything that differs comes from the environment.

There is no secret here: `local.py` creates a development key on first start and
`production.py` refuses to start without one.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("DJANGO_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

# --- Database -----------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}


def configure_database(db: dict) -> dict:
    """MySQL/MariaDB: utf8mb4, strict mode, persistent connections with health checks, and
    Django's backend with faster date and time parsing (`config.mysql`)."""
    if db["ENGINE"] == "django.db.backends.mysql":
        db["ENGINE"] = "config.mysql"
        options = db.setdefault("OPTIONS", {})
        options.setdefault("charset", "utf8mb4")
        options.setdefault("init_command", "SET sql_mode='STRICT_TRANS_TABLES', innodb_strict_mode=1")
        options.setdefault("isolation_level", "read committed")
        db.setdefault("TEST", {}).update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"})
        db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
        db["CONN_HEALTH_CHECKS"] = True
    db["ATOMIC_REQUESTS"] = False
    return db


configure_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (login rate limits need a cache shared by every process) -----------------------
def redis_cache(caches: dict) -> dict:
    """Django's Redis backend replaced by config.cache.RedisCache (the same, with one Redis
    client per connection pool instead of one per cache call)."""
    for params in caches.values():
        if params.get("BACKEND") == "django.core.cache.backends.redis.RedisCache":
            params["BACKEND"] = "config.cache.RedisCache"
    return caches


CACHES = redis_cache({"default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")})

# --- Applications ---------------------------------------------------------------------------
INSTALLED_APPS = [
    "hospitals.admin_site.HospitalAdminConfig",  # django.contrib.admin with the hospital admin site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "simple_history",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oauth2_provider",
    "hospitals",
    "patients",
    "screening",
    "webhooks",
    "fhir_facade",
]

MIDDLEWARE = [
    "config.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "hospitals.security.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "hospitals.security.SessionTimeoutMiddleware",
    "hospitals.security.MfaRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "hospitals.middleware.TenantScopeMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hospitals.context_processors.tenant",
            ],
            "builtins": ["hospitals.templatetags.iso_dates"],
        },
    },
]
# Django's widget templates, the common ones written out in Python (the same text).
FORM_RENDERER = "config.forms.WidgetRenderer"

# --- Authentication (django-allauth) --------------------------------------------------------
AUTH_USER_MODEL = "hospitals.User"
# Django's and allauth's, each reading a session's user by a prepared statement.
AUTHENTICATION_BACKENDS = [
    "hospitals.backends.ModelBackend",
    "hospitals.backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "hospitals.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
}
# Each session's last activity, IP and browser, written by the first request after sign-in and
# then once a minute by hospitals.security.SessionTimeoutMiddleware (not allauth's middleware).
USERSESSIONS_TRACK_ACTIVITY = True
# Hospital admins and platform staff need a second factor (hospitals.security.MfaRequiredMiddleware).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_FORMS = {"activate_totp": "hospitals.security.ActivateTotpForm"}
MFA_TOTP_ISSUER = env.str("MFA_TOTP_ISSUER", default="Hospital records")

# --- Sessions and cookies -------------------------------------------------------------------
SESSION_ENGINE = "hospitals.sessions"  # Django's database sessions, read by a prepared statement
# Idle and absolute timeouts (hospitals.security.SessionTimeoutMiddleware; ASVS 3.3.2).
SESSION_IDLE_TIMEOUT_MINUTES = env.int("SESSION_IDLE_TIMEOUT_MINUTES", default=30)
SESSION_ABSOLUTE_TIMEOUT_HOURS = env.int("SESSION_ABSOLUTE_TIMEOUT_HOURS", default=12)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT_HOURS * 60 * 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# No inline script anywhere (JS lives in static/js); inline style attributes are allowed.
# The API documentation pages add what Swagger UI and Redoc need (config/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Email ----------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Scans are private: never under a URL served by the web server, only through an authenticated view.
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = None
DATA_UPLOAD_MAX_NUMBER_FILES = 10
# Where an upload over 2.5 MB is spooled while it arrives. On the filesystem of MEDIA_ROOT, a
# scan is then moved into place instead of copied (the system's temporary folder when unset).
FILE_UPLOAD_TEMP_DIR = env.str("DJANGO_FILE_UPLOAD_TEMP_DIR", default=None)
FILE_UPLOAD_HANDLERS = ["config.uploads.MemoryFileUploadHandler", "config.uploads.TemporaryFileUploadHandler"]

# --- Celery ---------------------------------------------------------------------------------
# The embedded default needs no broker server: kombu's filesystem transport under var/.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery" / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }

# --- Audit trail ----------------------------------------------------------------------------
# Behind a reverse proxy that sets X-Forwarded-For, record the client address from it.
AUDIT_TRUST_X_FORWARDED_FOR = env.bool("AUDIT_TRUST_X_FORWARDED_FOR", default=False)

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}

# --- Screening pipeline ---------------------------------------------------------------------
SCAN_MAX_BYTES = env.int("SCAN_MAX_BYTES", default=60 * 1024 * 1024)
# Request bodies above this are refused before Django reads them (several scans at once).
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=200 * 1024 * 1024)
SCREENING_MAX_ATTEMPTS = env.int("SCREENING_MAX_ATTEMPTS", default=5)
SCREENING_STALE_QUEUED_SECONDS = env.int("SCREENING_STALE_QUEUED_SECONDS", default=120)
SCREENING_STALE_RUNNING_SECONDS = env.int("SCREENING_STALE_RUNNING_SECONDS", default=300)
SCREENING_SWEEP_INTERVAL_SECONDS = env.int("SCREENING_SWEEP_INTERVAL_SECONDS", default=60)
SCREENING_PRELOAD_MODEL = env.bool("SCREENING_PRELOAD_MODEL", default=True)
# Micro-batching: a worker screens up to this many queued first attempts in one predict call,
# waiting at most this long for the batch to fill. On CPU a batch of 8 predicts barely faster
# per image than one of 1, and its results release their waiting uploads together: 4 keeps
# those bursts small. GPU workers gain from larger batches.
SCREENING_BATCH_MAX = env.int("SCREENING_BATCH_MAX", default=4)
SCREENING_BATCH_WAIT_MS = env.int("SCREENING_BATCH_WAIT_MS", default=20)
# CPU priority of the inference pool processes (added to the worker's nice value): where web
# and worker share a machine, uploads and page loads go first and screening takes the
# rest of the CPU; on a machine of its own the worker is as fast as without. 0 keeps it.
SCREENING_WORKER_NICE = env.int("SCREENING_WORKER_NICE", default=10)
# Workers keep their database connection between tasks (config/celery_app.py closes old or
# broken ones as requests do); Celery's fixup then closes it only once per this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULE = {
    "screening-sweep": {"task": "screening.sweep", "schedule": SCREENING_SWEEP_INTERVAL_SECONDS},
}
CELERY_TASK_ROUTES = {"screening.run": {"queue": "inference"}, "screening.sweep": {"queue": "default"}}

# --- Webhooks (see README "Webhooks") ----------------------------------------------------------
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_BACKOFF_BASE_SECONDS = env.float("WEBHOOK_BACKOFF_BASE_SECONDS", default=30.0)
WEBHOOK_BACKOFF_MAX_SECONDS = env.float("WEBHOOK_BACKOFF_MAX_SECONDS", default=3600.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.int("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=60)
WEBHOOK_SWEEP_GRACE_SECONDS = env.int("WEBHOOK_SWEEP_GRACE_SECONDS", default=60)
# Receivers on loopback/private networks are refused unless this is set (development, tests).
WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = env.bool("WEBHOOK_ALLOW_PRIVATE_DESTINATIONS", default=False)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {"task": "webhooks.sweep", "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS}
CELERY_TASK_ROUTES.update({"webhooks.deliver": {"queue": "default"}, "webhooks.sweep": {"queue": "default"}})
CELERY_TASK_DEFAULT_QUEUE = "default"

# --- Partner API (DRF, OAuth2 client credentials, OpenAPI) ---------------------------------
# Every API view derives from hospitals.api.base: it authenticates, resolves the hospital
# from the URL, checks the credential against it (404 otherwise), checks scope or role
# (403) and runs the handler inside that hospital's scope. Errors are RFC 7807 problems.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hospitals.api.authentication.PartnerOAuth2Authentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["hospitals.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "hospitals.api.pagination.ApiCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hospitals.api.exceptions.problem_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["hospitals.api.throttling.CredentialRateThrottle"],
    # Per client (token) or per portal user; uploads also per hospital. Rates are read at
    # request time, so tests (and operators) can change them.
    "DEFAULT_THROTTLE_RATES": {
        "credential": env.str("API_THROTTLE_RATE", default="600/min"),
        "upload": env.str("API_UPLOAD_THROTTLE_RATE", default="60/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# The cache that holds throttle counters (shared by every web node in production).
API_THROTTLE_CACHE = env.str("API_THROTTLE_CACHE", default="default")
API_PAGE_SIZE = 50
API_MAX_PAGE_SIZE = 200

OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "Read patients, lab tests, screenings, AI results and reviews",
        "write": "Create and update patients, lab tests, status changes and reviews",
        "screening:upload": "Upload chest X-rays for screening",
    },
    "DEFAULT_SCOPES": ["read"],
    # A client may only get the scopes its hospital admin allowed it.
    "SCOPES_BACKEND_CLASS": "hospitals.api.scopes.PartnerScopes",
    "OAUTH2_VALIDATOR_CLASS": "hospitals.api.scopes.PartnerOAuth2Validator",
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("API_TOKEN_EXPIRE_SECONDS", default=3600),
    # Each partner application is created with the client-credentials grant only (hospitals.api.services).
    # OAuth 2.0 Security BCP (RFC 9700): only client credentials are used, but every other
    # path is closed too; tokens are stored hashed and accepted in the header only.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    "PKCE_REQUIRED": True,
    **{f"COMPLIANT_BCP_RFC9700_{gate}": True for gate in (
        "IMPLICIT_GRANT", "PASSWORD_GRANT", "PKCE_METHOD", "ACCESS_TOKEN_TRANSPORT", "AUTHZ_RESPONSE_ISS",
        "TOKEN_STORAGE", "REFRESH_TOKEN", "REDIRECT_URI_SCHEME", "REDIRECT_URI_MATCHING", "PKCE_REQUIRED")},
}
# Named explicitly: a migration that references a DOT model resolves it through these.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"

SPECTACULAR_SETTINGS = {
    "TITLE": "Hospital records and CXR screening: Partner API",
    "DESCRIPTION": (
        "REST API for partner systems of one hospital. Authenticate with OAuth2 client credentials "
        "(`POST /o/token/`); every path carries the hospital slug, which must be the credential's "
        "hospital (anything else answers 404). Errors are RFC 7807 problem details "
        "(`application/problem+json`). AI results are a screening aid, not a diagnosis."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hospitals.api.schema.add_problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PatientStatusEnum": "patients.models.Status",
        "ScreeningStatusEnum": "screening.models.ScreeningStatus",
        "AiLabelEnum": "screening.models.AiLabel",
    },
}
