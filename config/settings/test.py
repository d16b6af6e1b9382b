"""The test suite. SQLite unless DATABASE_URL is set (CI runs the suite a second time on
MariaDB); the cache is Redis whenever Redis is reachable, so rate limits meet a real cache."""

import os
import socket
import uuid

from django.core.management.utils import get_random_secret_key

from .base import *  # noqa: F403
from .base import env


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


SECRET_KEY = get_random_secret_key()
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
MEDIA_ROOT = Path(os.environ.get("TEST_MEDIA_ROOT", f"/tmp/hospital-test-media-{os.getpid()}"))  # noqa: F405
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405

REDIS_URL = env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")
if reachable("127.0.0.1", 6379) or "TEST_REDIS_URL" in os.environ:
    CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Tests publish to memory:// unless a test (or the worker it starts) names a real broker:
# tests/screening/test_pipeline_worker.py runs a real worker on Redis or on the filesystem
# transport in TEST_CELERY_BROKER_DIR.
CELERY_BROKER_URL = env.str("TEST_CELERY_BROKER_URL", default="memory://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = env.str("TEST_CELERY_BROKER_DIR")
    CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": _broker_dir, "data_folder_out": _broker_dir,
                                       "control_folder": f"{_broker_dir}/control", "store_processed": False}
# Fault-injection tests start workers with a short visibility timeout or short task time
# limits (JSON: broker transport options; Celery task annotations).
CELERY_BROKER_TRANSPORT_OPTIONS = {**globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),  # noqa: F405
                                   **env.json("TEST_CELERY_TRANSPORT_OPTIONS", default={})}
CELERY_TASK_ANNOTATIONS = env.json("TEST_CELERY_TASK_ANNOTATIONS", default={})

# SQLite: a file, not memory, so a worker process can open the test database (it gets the
# path as DATABASE_URL); IMMEDIATE transactions and a busy timeout so the test process and
# the worker wait for each other's write locks instead of failing with "database is locked".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str(  # noqa: F405
        "TEST_SQLITE_NAME", default=f"/tmp/hospital-test-db-{os.getpid()}.sqlite3")
    DATABASES["default"].setdefault("OPTIONS", {}).update(  # noqa: F405
        {"transaction_mode": "IMMEDIATE", "timeout": 30})

# Tests never collect static files: no STATIC_ROOT for WhiteNoise to look for.
STATIC_ROOT = None
