"""Production settings refuse to start without their secrets and pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "records.example.org",
    "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/2",
}


def manage(*args, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CACHE_", "CELERY_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_deploy_check_reports_no_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "CACHE_URL",
                                     "CELERY_BROKER_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_mysql_url_gets_utf8mb4_strict_mode_and_persistent_connections():
    from config.settings.base import configure_database

    db = configure_database({"ENGINE": "django.db.backends.mysql", "NAME": "x"})
    assert db["ENGINE"] == "config.mysql"  # Django's backend with faster date parsing
    assert db["OPTIONS"]["charset"] == "utf8mb4"
    assert "STRICT_TRANS_TABLES" in db["OPTIONS"]["init_command"]
    assert db["CONN_MAX_AGE"] > 0 and db["CONN_HEALTH_CHECKS"] is True


def test_mariadb_session_is_strict_when_in_use(db):
    from django.db import connection

    if connection.vendor != "mysql":
        assert connection.vendor == "sqlite"
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.sql_mode, @@character_set_connection")
        sql_mode, charset = cursor.fetchone()
    assert "STRICT_TRANS_TABLES" in sql_mode
    assert charset == "utf8mb4"


def test_a_redis_cache_url_gets_the_backend_that_keeps_one_client_per_pool():
    show = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    result = manage("shell", "--no-imports", "-c", show, env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config.cache.RedisCache"


def test_the_redis_cache_reuses_its_client_per_pool_and_still_reads_from_replicas():
    """No server is needed: redis-py connects on the first command, not when a client is made."""
    from config.cache import RedisCache

    cache = RedisCache("redis://127.0.0.1:6379/1,redis://127.0.0.1:6379/2", {})._cache
    primary = cache.get_client(write=True)
    assert cache.get_client(write=True) is primary
    replica = cache.get_client()  # reads go to the other server
    assert replica is not primary and cache.get_client() is replica
    assert replica.connection_pool.connection_kwargs["db"] == 2
