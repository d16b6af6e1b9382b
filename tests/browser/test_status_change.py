"""The portal's "done when" flow in a real browser: Debian's chromium driven by
Playwright against pytest-django's live server. A demo clinician signs in through the
allauth page, finds a patient by search, records a status change and sees it on the
patient's timeline."""

import pytest
from django.core.management import call_command
from django_scopes import scope

from hospitals.models import Hospital
from patients.models import Patient, Status

from .conftest import SCREENSHOTS

PASSWORD = "browser-demo-password-7"
SCREENSHOT = str(SCREENSHOTS / "status-change-patient.png")

pytestmark = pytest.mark.browser


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
