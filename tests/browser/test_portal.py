"""The staff portal's day in a real browser, against the seeded demo hospitals: a
registrar registers a patient; a clinician uploads a film and watches the real worker
read it; a radiologist confirms it from the review worklist with the keyboard; the
clinician applies the suggested status and the dashboard follows; a hospital admin
invites a member, creates an API client and exports the audit trail; and a member of
another hospital gets 404 on all of these pages. Every page is checked with axe-core."""

import csv
import datetime
import io
from collections import Counter

import pytest
from django_scopes import scope
from PIL import Image, ImageOps

from hospitals.models import AuditEvent, Membership, Role
from patients.models import Patient, Status
from patients.services import labtest_create
from screening import selectors, services
from screening.models import Review, Screening
from tests.reliability.stack import FILM, wait_final

pytestmark = pytest.mark.browser

GENERAL = "/h/demo-general"
LIVE_TIMEOUT = 180_000  # ms: the worker's first film loads the model


def test_registrar_registers_a_patient(portal, demo):
    page = portal.sign_in("registrar@demo-general.local")
    page.wait_for_url(f"{demo.url}{GENERAL}/")
    portal.visit(page, "dashboard", shot=True)
    page.click("nav.main-nav >> text=Patients")
    portal.visit(page, "patients", shot=True)
    page.goto(f"{demo.url}{GENERAL}/patients/new/")
    portal.visit(page, "new-patient")
    page.fill('input[name="mrn"]', "DEMO-G-0999")
    page.fill('input[name="given_name"]', "Rosalind")
    page.fill('input[name="family_name"]', "Franklin")
    page.select_option('select[name="sex"]', "female")
    page.fill('input[name="birth_date"]', "1958-04-16")
    page.click('button:has-text("Register")')
    page.wait_for_selector("text=Rosalind Franklin was registered as suspected.")
    portal.visit(page, "patient", shot=True)
    with scope(hospital=demo.general):
        patient = Patient.objects.get(mrn="DEMO-G-0999")
    assert page.url == f"{demo.url}{GENERAL}/patients/{patient.pk}/"
    assert (patient.given_name, patient.family_name, patient.status) == ("Rosalind", "Franklin", Status.SUSPECTED)
    assert "Suspected" in page.inner_text("h1")
    portal.assert_clean()


def test_hospital_admin_invites_creates_a_client_and_exports_the_audit_trail(portal, demo):
    page = portal.sign_in("hospital-admin@demo-general.local")
    page.goto(f"{demo.url}{GENERAL}/members/")
    assert page.url == f"{demo.url}{GENERAL}/members/"
    portal.visit(page, "members", shot=True)
    page.click("text=Invite a member")
    page.wait_for_url("**/members/invite/")
    portal.visit(page, "invite")
    page.fill('input[name="email"]', "new.radiologist@demo-general.local")
    page.fill('input[name="first_name"]', "Nadia")
    page.fill('input[name="last_name"]', "Novak")
    page.select_option('select[name="role"]', Role.RADIOLOGIST)
    page.click('button:has-text("Send invitation")')
    page.wait_for_selector("text=Invitation sent to new.radiologist@demo-general.local.")
    assert "new.radiologist@demo-general.local" in page.inner_text("main table")
    with scope(hospital=demo.general):
        assert Membership.objects.get(hospital=demo.general, user__email="new.radiologist@demo-general.local"
                                      ).role == Role.RADIOLOGIST

    page.click("nav.main-nav >> text=API clients")
    portal.visit(page, "api-clients")
    page.click("text=New API client")
    portal.visit(page, "api-client-new")
    page.fill('input[name="name"]', "City lab LIS")
    page.check('input[name="scopes"][value="write"]')
    page.click('button:has-text("Create client")')
    page.wait_for_selector("#client-secret")
    assert len(page.inner_text("#client-secret")) >= 20
    portal.visit(page, "api-client-created")
    page.click("text=Done")
    assert "City lab LIS" in page.inner_text("main")

    page.click("nav.main-nav >> text=Webhooks")
    portal.visit(page, "webhooks")
    page.click("nav.main-nav >> text=Audit trail")
    portal.visit(page, "audit", shot=True)
    with page.expect_download() as download:
        page.click("text=Export CSV")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert download.value.suggested_filename.endswith(".csv")
    exported = Counter((row["action"], row["object_type"]) for row in rows)
    with scope(hospital=demo.general):
        stored = Counter(AuditEvent.objects.filter(hospital=demo.general).values_list("action", "object_type"))
    assert exported[("create", "partner_client")] == stored[("create", "partner_client")] == 1
    assert exported[("create", "membership")] == stored[("create", "membership")] == len(Role.values) + 1
    assert stored[("export", "audit_event")] == 1
    portal.assert_clean()


def test_member_of_another_hospital_gets_404(portal, demo):
    with scope(hospital=demo.general):
        patient = Patient.objects.get(mrn="DEMO-G-0001")
        uploader = Membership.objects.get(hospital=demo.general, role=Role.CLINICIAN).user
        screening = services.scan_upload(patient=patient, data=FILM.read_bytes(), filename="film.jpg",
                                         actor=uploader)
    page = portal.sign_in("hospital-admin@demo-north.local")
    pages = ["", "patients/", f"patients/{patient.pk}/", "patients/new/", f"patients/{patient.pk}/scans/upload/",
             "screenings/", "screenings/review/", f"screenings/{screening.pk}/", "members/", "members/invite/",
             "api-clients/", "audit/", "webhooks/"]
    for path in pages:
        response = page.goto(f"{demo.url}{GENERAL}/{path}")
        assert response.status == 404, path
        assert patient.family_name not in page.content()
    portal.visit(page, "404", shot=True)
    # Their own hospital's pages open as usual.
    assert page.goto(f"{demo.url}/h/demo-north/screenings/review/").status == 200
    portal.assert_clean()


def test_login_page(portal, demo):
    page = portal.page()
    page.goto(f"{demo.url}/accounts/login/")
    portal.visit(page, "login", shot=True)
    portal.assert_clean()


def dashboard_figures(page) -> dict:
    counts = {item.get_attribute("data-status"): int(item.query_selector("[data-count]").inner_text())
              for item in page.query_selector_all("#status-counts li[data-status]")}
    head = [th.text_content().strip() for th in page.query_selector_all("#trend-table thead th")][1:]
    last = page.query_selector_all("#trend-table tbody tr")[-1]
    today = dict(zip(head, (int(td.text_content()) for td in last.query_selector_all("td"))))
    return {"counts": counts, "today": today, "day": last.query_selector("th").text_content().strip(),
            "pending": int(page.inner_text("#pending-reviews [data-count]"))}


def film_variant(*, mirror: bool = False) -> bytes:
    """The fixture film as a PNG, mirrored or slightly cropped: another film to read."""
    image = Image.open(FILM).convert("L")
    image = ImageOps.mirror(image) if mirror else image.crop((10, 10, 214, 214)).resize((224, 224))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_film_from_upload_to_review_to_status_change(portal, pipeline, demo):
    with scope(hospital=demo.general):
        patient = Patient.objects.get(mrn="DEMO-G-0001")
        clinician = Membership.objects.get(hospital=demo.general, role=Role.CLINICIAN).user
        labtest_create(patient=patient, test_type="rt_pcr", result="positive", sample_date=datetime.date.today(),
                       actor=clinician)
    assert patient.status == Status.SUSPECTED

    # The radiologist's worklist is open before the film arrives; it refreshes by itself.
    reader = portal.sign_in("radiologist@demo-general.local")
    reader.goto(f"{demo.url}{GENERAL}/screenings/review/")
    assert "Nothing is waiting for review" in reader.inner_text("#review-queue")
    portal.visit(reader, "worklist-empty")
    reader.evaluate("window.__sameDocument = true")

    # The clinician notes the dashboard, then uploads the film and watches it being read.
    page = portal.sign_in("clinician@demo-general.local")
    page.wait_for_url(f"{demo.url}{GENERAL}/")
    before = dashboard_figures(page)
    page.goto(f"{demo.url}{GENERAL}/patients/{patient.pk}/")
    portal.visit(page, "patient")
    page.click("text=Upload X-rays")
    portal.visit(page, "upload")
    page.set_input_files('input[name="files"]', str(FILM))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-outcome li.ok")
    portal.visit(page, "upload-done")
    page.click("#upload-outcome a:has-text('Open screening')")
    page.wait_for_url("**/screenings/*/")
    screening_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    # Two more films arrive for other patients, so the worklist has an order to show.
    with scope(hospital=demo.general):
        extras = [services.scan_upload(patient=Patient.objects.get(mrn=mrn), data=data, filename=f"{mrn}.png",
                                       actor=clinician)
                  for mrn, data in (("DEMO-G-0002", film_variant(mirror=True)), ("DEMO-G-0011", film_variant()))]
    page.evaluate("window.__sameDocument = true")
    try:
        page.wait_for_selector('#screening-live [data-status="done"]', timeout=LIVE_TIMEOUT)
    except Exception:
        pytest.fail("the screening page did not reach done; the worker said:\n" + pipeline.tail())
    assert page.evaluate("window.__sameDocument") is True  # no reload
    with scope(hospital=demo.general):
        result = selectors.screening_result(screening=Screening.objects.get(pk=screening_id))
    assert result is not None and f"{result.covid_probability:.3f}" in page.inner_text(".ai-result")
    assert "not a diagnosis" in page.inner_text(".disclaimer")
    portal.visit(page, "screening", shot=True)

    # The worklist shows them without a reload, highest COVID-19 probability first.
    finals = wait_final([s.pk for s in extras], pipeline)
    waiting = 1 + sum(s.status == "done" for s in finals.values())
    row = f'#review-queue tr[data-screening="{screening_id}"]'
    reader.wait_for_selector(f'#review-queue .queue-count:text-is("{waiting}")', timeout=30_000)
    assert reader.evaluate("window.__sameDocument") is True
    shown = [int(row.get_attribute("data-screening"))
             for row in reader.query_selector_all("#review-queue tr[data-screening]")]
    with scope(hospital=demo.general):
        assert shown == [s.pk for s in selectors.review_queue(hospital=demo.general)]
    # j / k move through the list; the film and the AI output follow.
    for presses in range(1, len(shown) + 1):
        reader.keyboard.press("j")
        reader.wait_for_selector(f'#reading-pane[data-screening="{shown[presses - 1]}"]')
        if shown[presses - 1] == screening_id:
            break
    if presses > 1:
        reader.keyboard.press("k")
        reader.wait_for_selector(f'#reading-pane[data-screening="{shown[presses - 2]}"]')
        reader.keyboard.press("j")
        reader.wait_for_selector(f'#reading-pane[data-screening="{screening_id}"]')
    reader.wait_for_selector(f"{row}.selected")
    reader.keyboard.press("z")
    assert reader.get_attribute("#reading-pane .cxr-zoom", "aria-pressed") == "true"
    width, visible = reader.locator("#reading-pane .cxr-frame").evaluate(
        "f => f.querySelector('img').decode().then(() => [f.scrollWidth, f.clientWidth])")
    assert width > 2 * visible  # the film at 2.5x, scrolling in its frame
    reader.keyboard.press("z")
    assert reader.get_attribute("#reading-pane .cxr-zoom", "aria-pressed") == "false"
    reader.keyboard.press("h")
    assert reader.locator(".cxr-heatmap").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert reader.is_visible(".cxr-heatmap") and not reader.is_visible(".cxr-image")
    portal.visit(reader, "worklist", shot=True)
    reader.keyboard.press("h")
    assert reader.is_visible(".cxr-image")
    reader.keyboard.press("c")
    assert reader.is_checked('#review-form input[name="decision"][value="confirm"]')
    assert reader.input_value('#review-form select[name="clinical_label"]') == result.label
    reader.keyboard.press("ArrowDown")  # from "Yes" to "No": no radiological signs
    reader.keyboard.press("Tab")
    reader.keyboard.type("Clear lung fields, no consolidation.")
    reader.keyboard.press("Control+Enter")
    reader.wait_for_selector(f"text=Your review of screening #{screening_id} was recorded.")
    assert reader.query_selector(row) is None and reader.inner_text("#review-queue .queue-count") == str(waiting - 1)
    reader.set_viewport_size({"width": 768, "height": 1024})  # a ward tablet: the list above the film
    portal.visit(reader, "worklist-tablet", shot=True)
    assert reader.evaluate("document.documentElement.scrollWidth") <= 768
    with scope(hospital=demo.general):
        review = Review.objects.get(screening_id=screening_id)
    assert (review.decision, review.clinical_label, review.radiological_signs, review.reason) == (
        "confirm", result.label, False, "Clear lung fields, no consolidation.")
    assert review.reviewer.email == "radiologist@demo-general.local"

    # The clinician applies the suggestion (positive test, no signs: carrier); the dashboard follows.
    page.reload()
    page.click('button:has-text("Record carrier")')
    page.wait_for_selector("text=Status changed to carrier.")
    patient.refresh_from_db()
    assert patient.status == Status.CARRIER
    page.click("nav.main-nav >> text=Dashboard")
    portal.visit(page, "dashboard", shot=True)
    after = dashboard_figures(page)
    assert after["counts"]["suspected"] == before["counts"]["suspected"] - 1
    assert after["counts"]["carrier"] == before["counts"]["carrier"] + 1
    assert after["counts"]["all"] == before["counts"]["all"]
    assert after["day"] == before["day"] == datetime.date.today().isoformat()
    assert after["today"]["Carrier"] == before["today"]["Carrier"] + 1
    assert after["today"]["Infected"] == before["today"]["Infected"]
    assert after["pending"] == before["pending"] + waiting - 1
    portal.assert_clean()
