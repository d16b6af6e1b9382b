"""The screening pages in a real browser (Debian's chromium through Playwright against
the live server): the upload page's progress and per-file outcomes, and the screening
page updating itself from queued to done without a reload, the heatmap switch, a
radiologist's review and a clinician applying the suggested status.

The screenshot of the screening page with the heatmap shown goes to the screenshots folder."""

import datetime

import numpy as np
import pytest
from django_scopes import scope, scopes_disabled

from hospitals.models import Role
from patients.models import Status
from patients.services import labtest_create
from screening import services
from screening.models import Review, Scan, Screening

from tests.factories import PASSWORD, MembershipFactory, PatientFactory, UserFactory
from tests.screening.conftest import FILM

from .conftest import SCREENSHOTS

SCREENSHOT = str(SCREENSHOTS / "screening-pages-heatmap.png")

pytestmark = pytest.mark.browser


@pytest.fixture
def team(flushable_audit, hospital_a):
    clinician = UserFactory(email="clinician@alpha.test", first_name="Cleo", last_name="Chen")
    radiologist = UserFactory(email="radiologist@alpha.test", first_name="Rae", last_name="Ruiz")
    with scopes_disabled():
        MembershipFactory(user=clinician, hospital=hospital_a, role=Role.CLINICIAN)
        MembershipFactory(user=radiologist, hospital=hospital_a, role=Role.RADIOLOGIST)
        patient = PatientFactory(hospital=hospital_a, given_name="Ada", family_name="Lovelace", mrn="MRN-0042")
    return clinician, radiologist, patient


def sign_in(browser, live_server, user):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill('input[name="login"]', user.email)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{live_server.url}/h/alpha/")
    return page


def test_upload_page_reports_each_file(team, live_server, browser, hospital_a, tmp_path):
    clinician, _, patient = team
    good, bad = tmp_path / "film.jpg", tmp_path / "notes.png"
    good.write_bytes(FILM.read_bytes())
    bad.write_bytes(b"not an image")
    page = sign_in(browser, live_server, clinician)
    page.goto(f"{live_server.url}/h/alpha/patients/{patient.pk}/")
    page.click("text=Upload X-rays")
    page.set_input_files('input[name="files"]', [str(good), str(bad)])
    page.evaluate("window.__sameDocument = true")
    page.click("#upload-submit")
    page.wait_for_selector("#upload-outcome .upload-results")
    assert page.evaluate("window.__sameDocument") is True  # answered in place, by the script
    assert page.is_visible("#upload-progress-bar")
    assert page.evaluate("document.getElementById('upload-progress-bar').value") == 100
    ok, refused = page.inner_text("#upload-outcome li.ok"), page.inner_text("#upload-outcome li.bad")
    assert "film.jpg: stored and queued." in ok and "Open screening #" in ok
    assert refused.startswith("notes.png:")
    assert "1 stored, 1 refused." in page.inner_text("#upload-outcome")
    with scope(hospital=hospital_a):
        assert [s.original_filename for s in Scan.objects.filter(patient=patient)] == ["film.jpg"]


def test_screening_page_updates_live_then_review_and_apply(team, live_server, browser, hospital_a):
    from ml.explain import overlay_jpeg
    from ml.preprocessing import load_image_bytes

    clinician, radiologist, patient = team
    data = FILM.read_bytes()
    with scope(hospital=hospital_a):
        screening = services.scan_upload(patient=patient, data=data, filename="film.jpg", actor=clinician)
        labtest_create(patient=patient, test_type="rt_pcr", result="positive", sample_date=datetime.date.today(),
                       actor=clinician)
    url = f"{live_server.url}/h/alpha/screenings/{screening.pk}/"

    page = sign_in(browser, live_server, radiologist)
    page.goto(url)
    assert page.get_attribute("#screening-live [data-status]", "data-status") == "queued"
    page.evaluate("window.__sameDocument = true")
    with scope(hospital=hospital_a):
        Screening.objects.filter(pk=screening.pk).update(status="running")
    page.wait_for_selector('#screening-live [data-status="running"]')
    # The worker's answer, with a Grad-CAM-style overlay built from a made-up map.
    y, x = np.mgrid[0:8, 0:8]
    heat = np.exp(-(((x - 2.5) / 1.5) ** 2 + ((y - 4) / 2) ** 2)).astype(np.float32)
    with scope(hospital=hospital_a):
        services.screening_store_result(screening=Screening.objects.get(pk=screening.pk), prediction={
            "probabilities": {"covid": 0.71, "pneumonia": 0.19, "normal": 0.10}, "label": "covid",
            "covid_probability": 0.71, "covid_positive": True, "decision": "covid_suspected", "threshold": 0.42,
            "model_name": "cxrnet", "model_version": "2024.06-b1", "model_sha256": "9f2c1e7a5b3d" + "0" * 52,
            "preprocessing_version": "cxr-pp-2", "quality": {}, "timings_ms": {"predict": 41.2},
        }, overlay=overlay_jpeg(load_image_bytes(data).pixels, heat))
    page.wait_for_selector('#screening-live [data-status="done"]')
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert "COVID-19 suspected" in page.inner_text(".ai-result")
    assert "2024.06-b1" in page.inner_text(".ai-result")

    page.check("#heatmap-toggle")
    assert page.locator(".cxr-heatmap").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert page.is_visible(".cxr-heatmap") and not page.is_visible(".cxr-image")
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.uncheck("#heatmap-toggle")
    assert page.is_visible(".cxr-image") and not page.is_visible(".cxr-heatmap")

    page.check('input[name="decision"][value="confirm"]')
    page.select_option('select[name="clinical_label"]', "covid")
    page.check('input[name="radiological_signs"][value="yes"]')
    page.fill('textarea[name="reason"]', "Peripheral ground-glass opacities, right lower zone.")
    page.click('button:has-text("Record review")')
    page.wait_for_selector("text=Your review was recorded.")
    assert "Peripheral ground-glass" in page.inner_text("table.reviews")
    assert "A clinician can record it." in page.inner_text(".suggestion")
    with scope(hospital=hospital_a):
        assert Review.objects.get(screening=screening).reviewer == radiologist

    page = sign_in(browser, live_server, clinician)
    page.goto(url)
    page.click('button:has-text("Record infected")')
    page.wait_for_selector("text=Status changed to infected.")
    patient.refresh_from_db()
    assert patient.status == Status.INFECTED
