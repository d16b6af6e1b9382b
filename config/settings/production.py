"""Production: every secret and host comes from the environment, with no default.

Needs DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL (mysql://...), CACHE_URL
(redis://...) and CELERY_BROKER_URL (redis:// or amqp://).
"""

from .base import *  # noqa: F403
from .base import DATABASES, configure_database, env, redis_cache

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES["default"] = configure_database(env.db("DATABASE_URL"))
CACHES = redis_cache({"default": env.cache("CACHE_URL")})
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"

# MariaDB creates no conditional unique constraints (models.W036): allauth's one-primary-email
# and one-authenticator-of-a-type constraints. Both are enforced in code instead: emails
# are unique case-insensitively (hospitals.models.User, hospitals.services.user_create) and
# allauth.mfa refuses a second TOTP authenticator. Reviewed: tests/security/test_deploy.py.
SILENCED_SYSTEM_CHECKS = ["models.W036"]
