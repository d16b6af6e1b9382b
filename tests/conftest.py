import importlib
import json
import os
import time

import pytest
from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from django.db import connection
from django.test import Client, override_settings
from django_scopes import scope, scopes_disabled
from pytest_django import live_server_helper

from hospitals.api import throttling  # noqa: F401
from hospitals.models import AuditChainHead, AuditEvent, Role

from .factories import PASSWORD, HospitalFactory, MembershipFactory, UserFactory

# The throttles import before any test freezes the clock: DRF's `SimpleRateThrottle.timer` is
# `time.time` read when its module is first imported, so a first import under freezegun would
# keep freezegun's function as the timer (and call it with the throttle as its argument).


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _worker_forgets_ended_screenings():
    """The inference worker's memory of the screenings its batches ended
    (`screening.tasks.remember_ended`) is keyed by id: the ids of one test's rolled-back
    rows come again in the next test, never in a database that keeps its rows."""
    from screening import tasks

    tasks._ended_here.clear()


@pytest.fixture(autouse=True)
def _force_login_passes_the_second_factor(monkeypatch):
    """`Client.force_login` skips the sign-in flow, second factor included: its sessions
    count as having passed it, so tests of admin pages need no TOTP step. Tests of the
    MFA requirement sign in through allauth's pages (tests/security/test_mfa.py)."""
    force_login = Client.force_login

    def force_login_with_mfa(self, user, backend=None):
        force_login(self, user, backend)
        session = self.session
        session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "mfa", "type": "totp", "at": time.time()}]
        session["account_authentication_methods_user"] = str(user.pk)
        session.save()

    monkeypatch.setattr(Client, "force_login", force_login_with_mfa)


@pytest.fixture
def unscoped():
    """Test set-up that writes across hospitals (factories) runs with scopes disabled."""
    with scopes_disabled():
        yield


@pytest.fixture
def hospital_a(db):
    return HospitalFactory(name="Alpha General", slug="alpha")


@pytest.fixture
def hospital_b(db):
    return HospitalFactory(name="Beta North", slug="beta")


@pytest.fixture
def make_member(db):
    """make_member(hospital, role) -> User with an active membership."""

    def make(hospital, role=Role.CLINICIAN, **user_fields):
        user = UserFactory(**user_fields)
        with scopes_disabled():
            MembershipFactory(user=user, hospital=hospital, role=role)
        return user

    return make


@pytest.fixture
def login(client):
    def do(user):
        client.force_login(user)
        return client

    return do


@pytest.fixture
def in_scope():
    """in_scope(hospital) as a context manager for service calls in tests."""
    return lambda hospital: scope(hospital=hospital)


append_only = importlib.import_module("hospitals.migrations.0002_audit_append_only")


@pytest.fixture
def flushable_audit(transactional_db):
    """The audit table refuses DELETE (database triggers), but a transactional test ends
    with a flush. Empty it with the triggers briefly dropped, before the flush runs.
    (On MariaDB, DROP TRIGGER commits; nothing else is open at that point.)"""
    yield
    with connection.schema_editor() as editor:
        for sql in append_only.DROP:
            editor.execute(sql)
    with scopes_disabled():
        AuditEvent.objects.all().delete()
        AuditChainHead.objects.all().delete()
    with connection.schema_editor() as editor:
        for sql in {"sqlite": append_only.SQLITE, "mysql": append_only.MYSQL}.get(connection.vendor, []):
            editor.execute(sql)


@pytest.fixture(scope="session")
def live_server():
    """pytest-django's live server, started with an absolute MEDIA_URL. Our settings have
    MEDIA_URL = None (scans are never served by URL), which Django's live server handler
    cannot parse; a URL on another host makes that handler serve nothing at all."""
    with override_settings(MEDIA_URL="http://media.invalid/"):
        server = live_server_helper.LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost")
    yield server
    server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls tests make
    # meanwhile are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# --- figures --------------------------------------------------------------------------------------


@pytest.fixture
def figure(capsys):
    """figure(name, line): print a reliability figure (shown even when output is captured)
    and append it to the JSON lines file named by TEST_FIGURES_FILE, when set."""

    def report(name: str, line: str, **values):
        with capsys.disabled():
            print(f"\nFIGURE {name}: {line}")
        target = os.environ.get("TEST_FIGURES_FILE")
        if target:
            with open(target, "a") as fh:
                fh.write(json.dumps({"name": name, "line": line, **values}) + "\n")

    return report


__all__ = ["PASSWORD"]
