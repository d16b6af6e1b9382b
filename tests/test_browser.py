"""The portal's "done when" flow in a real browser: Debian's chromium driven by
Playwright against pytest-django's live server. A demo clinician signs in through the
allauth page, finds a patient by search, records a status change and sees it on the
patient's timeline."""

import importlib
import os

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_scopes import scope, scopes_disabled
from pytest_django import live_server_helper

from hospitals.models import AuditChainHead, AuditEvent, Hospital
from patients.models import Patient, Status

# Playwright's sync API runs an event loop in this thread; Django's ORM calls made here
# (the seed, the checks) are still synchronous and safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from playwright import sync_api  # noqa: E402  (after the environment variable above)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "browser-demo-password-7"
SCREENSHOT = "/tmp/portal.png"

append_only = importlib.import_module("hospitals.migrations.0002_audit_append_only")

pytestmark = pytest.mark.browser


@pytest.fixture
def flushable_audit(transactional_db):
    """The audit table refuses DELETE (database triggers), but a transactional test ends
    with a flush. Empty it with the triggers briefly dropped, before the flush runs."""
    yield
    vendor = connection.vendor
    with connection.schema_editor() as editor:
        for sql in append_only.DROP:
            editor.execute(sql)
    with scopes_disabled():
        AuditEvent.objects.all().delete()
        AuditChainHead.objects.all().delete()
    with connection.schema_editor() as editor:
        for sql in {"sqlite": append_only.SQLITE, "mysql": append_only.MYSQL}.get(vendor, []):
            editor.execute(sql)


@pytest.fixture(scope="module")
def live_server():
    """pytest-django's live server, started with an absolute MEDIA_URL. Our settings have
    MEDIA_URL = None (scans are never served by URL), which Django's live server handler
    cannot parse; a URL on another host makes that handler serve nothing at all."""
    with override_settings(MEDIA_URL="http://media.invalid/"):
        server = live_server_helper.LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost")
    yield server
    server.stop()


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_clinician_finds_patient_and_records_status_change(flushable_audit, live_server, browser):
    call_command("seed_demo", password=PASSWORD, json=True)
    hospital = Hospital.objects.get(slug="demo-general")
    with scope(hospital=hospital):
        patient = Patient.objects.get(mrn="DEMO-G-0001")
    assert patient.status == Status.SUSPECTED

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill('input[name="login"]', "clinician@demo-general.local")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{live_server.url}/h/demo-general/")
    assert "Demo General Hospital" in page.inner_text("header")

    page.click('nav.main-nav >> text=Patients')
    page.fill('input[name="q"]', patient.family_name + " " + patient.given_name[:3])
    page.click('form[role="search"] button[type="submit"]')
    page.click(f'text={patient.family_name}, {patient.given_name}')
    page.wait_for_url(f"**/patients/{patient.pk}/")

    page.click("text=Change status")
    page.select_option('select[name="to_status"]', "negative")
    page.fill('textarea[name="reason"]', "Two negative RT-PCR tests, symptoms resolved")
    page.click('button:has-text("Record status change")')
    page.wait_for_url(f"**/patients/{patient.pk}/")

    timeline = page.inner_text("ol.timeline")
    assert "Two negative RT-PCR tests, symptoms resolved" in timeline
    assert "Negative" in page.inner_text("h1")
    assert "Status changed to negative" in page.inner_text(".messages")
    page.screenshot(path=SCREENSHOT, full_page=True)

    patient.refresh_from_db()
    assert patient.status == Status.NEGATIVE
