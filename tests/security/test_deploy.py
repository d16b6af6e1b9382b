"""B5: `manage.py check --deploy --fail-level WARNING` is clean on the production settings,
with the environment production needs (and, when MariaDB answers, the database checks:
strict mode). The silenced list is asserted, so growing it needs a change here."""

import importlib.util
import json
import os
import secrets
import subprocess
import sys

from django.conf import settings

from config.settings.test import reachable

SILENCED = ["models.W036"]  # MariaDB: no conditional unique constraints (see config/settings/production.py)


def production_env(database_url: str) -> dict:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CACHE_", "CELERY_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "records.example.org",
        "DATABASE_URL": database_url,
        "CACHE_URL": "redis://127.0.0.1:6379/1",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    }


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], env=env, cwd=settings.BASE_DIR, check=False,
                          capture_output=True, text=True, timeout=120)


def test_deploy_check_is_clean_on_production_settings(figure, tmp_path):
    # Production runs on MariaDB; without its driver (a SQLite-only machine) the settings are
    # checked with an SQLite database instead, and the MariaDB checks below need the driver.
    has_driver = importlib.util.find_spec("MySQLdb") is not None
    env = production_env("mysql://app:secret@db.internal:3306/hospital" if has_driver
                         else f"sqlite:///{tmp_path}/production.sqlite3")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    checked = "settings" if has_driver else "settings, on SQLite: no MariaDB driver here"
    if has_driver and reachable("127.0.0.1", 3306):
        # The database checks too (MySQL strict mode), against the server the suite uses.
        env = production_env("mysql://root@127.0.0.1:3306/information_schema")
        result = manage("check", "--deploy", "--fail-level", "WARNING", "--database", "default", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        checked = "settings and MariaDB (strict mode)"
    code = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps("
            "{k: getattr(s, k) for k in ('SILENCED_SYSTEM_CHECKS', 'SECURE_HSTS_SECONDS', 'SECURE_SSL_REDIRECT', "
            "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'DEBUG')}))")
    values = json.loads(subprocess.run([sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR,
                                       capture_output=True, text=True, check=True).stdout)
    assert values == {"SILENCED_SYSTEM_CHECKS": SILENCED, "SECURE_HSTS_SECONDS": 31536000,
                      "SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
                      "DEBUG": False}
    figure("B5 deploy", f"deploy-check warnings 0 ({checked}; silenced list = {', '.join(SILENCED)})",
           warnings=0, silenced=SILENCED)
