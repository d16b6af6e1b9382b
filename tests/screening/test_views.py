"""Portal pages of the screening pipeline: upload (form and JSON), the screening page and
its status JSON in every state, reviews, applying the suggested status, the worklist and
the patient page's screenings. The worker is not needed: results are written directly."""

import datetime
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent, Role
from ml.inference import DISCLAIMER
from patients.models import Status, StatusChange
from patients.services import labtest_create
from screening.models import Review, Scan, Screening

from ..factories import PatientFactory, airesult_for, png_bytes, screening_for

STATES = ["queued", "running", "done", "failed", "rejected", "cannot_assess"]


@pytest.fixture
def patient(hospital_a):
    with scopes_disabled():
        return PatientFactory(hospital=hospital_a, given_name="Ada", family_name="Lovelace", mrn="MRN-SCR-1")


@pytest.fixture
def clinician(make_member, hospital_a):
    return make_member(hospital_a, Role.CLINICIAN, first_name="Cleo", last_name="Clinician")


@pytest.fixture
def radiologist(make_member, hospital_a):
    return make_member(hospital_a, Role.RADIOLOGIST, first_name="Rae", last_name="Radiologist")


@pytest.fixture
def viewer(make_member, hospital_a):
    return make_member(hospital_a, Role.VIEWER)


def url(name, **kwargs):
    return reverse(f"screening:{name}", kwargs={"hospital_slug": "alpha", **kwargs})


def upload_file(name, data, content_type="image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def make_screening(hospital, patient, actor, *, status="done", covid=0.82, reason="", seed=0, heatmap=True):
    with scope(hospital=hospital):
        screening = screening_for(patient, actor=actor, status="queued" if status == "done" else status,
                                  reason=reason, seed=seed)
        result = airesult_for(screening, covid=covid, heatmap=heatmap) if status == "done" else None
    return screening, result


def scans_of(hospital, patient):
    with scope(hospital=hospital):
        return list(Scan.objects.filter(patient=patient).order_by("id"))


# --- Upload --------------------------------------------------------------------------------------

def test_upload_page_shows_the_form_to_an_uploader(login, clinician, patient):
    response = login(clinician).get(url("upload", patient_pk=patient.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'type="file"' in body and "multiple" in body and 'enctype="multipart/form-data"' in body
    assert "upload-progress-bar" in body and "js/scan-upload.js" in body


def test_upload_several_files_one_bad_stores_the_good_ones(login, clinician, patient, hospital_a):
    client = login(clinician)
    files = [upload_file("first.png", png_bytes(seed=1)), upload_file("notes.png", b"this is not an image at all"),
             upload_file("second.png", png_bytes(seed=2))]
    response = client.post(url("upload", patient_pk=patient.pk), {"files": files}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("patients:detail", kwargs={"hospital_slug": "alpha",
                                                                                "pk": patient.pk})
    scans = scans_of(hospital_a, patient)
    assert [s.original_filename for s in scans] == ["first.png", "second.png"]
    with scope(hospital=hospital_a):
        assert Screening.objects.filter(patient=patient, status="queued").count() == 2
    texts = [str(m) for m in response.context["messages"]]
    assert sum("stored and queued" in t for t in texts) == 2
    refused = [t for t in texts if "notes.png" in t]
    assert len(refused) == 1 and "stored" not in refused[0]
    # Nothing of the bad file reached the disk: only the two good scans, their previews and
    # their decoded copies.
    from django.conf import settings
    stored = [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
    assert len(stored) == 6


def test_upload_answers_json_per_file(login, clinician, patient, hospital_a):
    client = login(clinician)
    files = [upload_file("good.png", png_bytes(seed=3)), upload_file("bad.dcm", b"\x00" * 300, "application/dicom"),
             upload_file("empty.png", b"")]
    response = client.post(url("upload", patient_pk=patient.pk), {"files": files},
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["stored"] == 1 and data["failed"] == 2
    good, bad, empty = data["files"]
    assert empty["ok"] is False and empty["error"].startswith("empty.png:") and "empty" in empty["error"][10:]
    assert good["ok"] is True and good["filename"] == "good.png"
    screening = Screening.objects.none()
    with scope(hospital=hospital_a):
        screening = Screening.objects.get(pk=good["screening_id"])
    assert good["screening_url"] == url("detail", pk=screening.pk)
    assert good["status_url"] == url("status", pk=screening.pk)
    assert good["duplicate_of"] is None and "warning" not in good
    assert bad["ok"] is False and bad["error"].startswith("bad.dcm:")
    assert "screening_id" not in bad


def test_upload_json_all_bad_is_400(login, clinician, patient, hospital_a):
    response = login(clinician).post(url("upload", patient_pk=patient.pk),
                                     {"files": [upload_file("x.jpg", b"GIF89a" + b"\x00" * 64)]},
                                     HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["files"][0]["ok"] is False
    assert scans_of(hospital_a, patient) == []


def test_upload_without_files_is_refused(login, clinician, patient):
    client = login(clinician)
    response = client.post(url("upload", patient_pk=patient.pk), {})
    assert response.status_code == 200
    assert "Choose at least one file" in response.content.decode()
    response = client.post(url("upload", patient_pk=patient.pk), {}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == ["Choose at least one file to upload."]


def test_duplicate_upload_is_flagged(login, clinician, patient, hospital_a):
    client = login(clinician)
    data = png_bytes(seed=5)
    client.post(url("upload", patient_pk=patient.pk), {"files": [upload_file("a.png", data)]})
    first = scans_of(hospital_a, patient)[0]
    response = client.post(url("upload", patient_pk=patient.pk), {"files": [upload_file("again.png", data)]},
                           HTTP_ACCEPT="application/json")
    outcome = response.json()["files"][0]
    assert outcome["ok"] is True and outcome["duplicate_of"] == first.pk
    assert outcome["warning"] == f"again.png: same file as scan #{first.pk} uploaded earlier."
    # Without JS the same warning is a message on the patient's page.
    response = client.post(url("upload", patient_pk=patient.pk), {"files": [upload_file("third.png", data)]},
                           follow=True)
    assert f"same file as scan #{first.pk} uploaded earlier" in response.content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.HOSPITAL_ADMIN])
def test_roles_without_scan_upload_get_403(login, make_member, hospital_a, patient, role):
    client = login(make_member(hospital_a, role))
    assert client.get(url("upload", patient_pk=patient.pk)).status_code == 403
    response = client.post(url("upload", patient_pk=patient.pk), {"files": [upload_file("a.png", png_bytes())]})
    assert response.status_code == 403
    assert scans_of(hospital_a, patient) == []


def test_upload_for_a_missing_patient_is_404(login, clinician):
    assert login(clinician).get(url("upload", patient_pk=987654)).status_code == 404


# --- Status JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize("state", STATES)
def test_status_json_for_every_state(login, clinician, patient, hospital_a, state):
    reason = {"failed": "Gave up after 5 attempts.", "rejected": "The image file is truncated.",
              "cannot_assess": "The image does not look like a frontal chest X-ray."}.get(state, "")
    screening, result = make_screening(hospital_a, patient, clinician, status=state, reason=reason)
    response = login(clinician).get(url("status", pk=screening.pk), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    data = response.json()
    assert data["id"] == screening.pk and data["status"] == state
    assert data["final"] is (state not in ("queued", "running"))
    assert data["reason"] == reason
    assert 'data-status="%s"' % state in data["html"]
    assert data["figure_key"].startswith(f"{screening.scan_id}-")
    if state == "done":
        assert data["result"]["id"] == result.pk
        assert data["result"]["covid_probability"] == pytest.approx(0.82)
        assert data["result"]["threshold"] == 0.5
        assert data["result"]["decision"] == "covid_suspected"
        assert data["result"]["model_version"] == "1.2.0"
        assert data["result"]["model_sha256_prefix"] == "ab12cd34ef56"
        assert data["result"]["heatmap_url"] == url("heatmap", pk=result.pk)
        assert data["result"]["disclaimer"] == DISCLAIMER
        assert "heatmap-toggle" in data["figure_html"]
        assert "Add your review" in data["html"]
    else:
        assert data["result"] is None
        assert "heatmap-toggle" not in data["figure_html"]
    if reason:
        assert reason in data["html"]


def test_status_json_audits_only_final_answers(login, clinician, patient, hospital_a):
    queued, _ = make_screening(hospital_a, patient, clinician, status="queued")
    done, _ = make_screening(hospital_a, patient, clinician, status="done", seed=1)
    client = login(clinician)

    def views(screening):
        with scopes_disabled():
            return AuditEvent.objects.filter(action="view", object_type="screening",
                                             object_id=str(screening.pk)).count()

    client.get(url("status", pk=queued.pk))
    client.get(url("status", pk=done.pk))
    assert views(queued) == 0
    assert views(done) == 1


def test_status_json_is_read_only(login, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician, status="queued")
    assert login(clinician).post(url("status", pk=screening.pk)).status_code == 405


# --- Screening page ------------------------------------------------------------------------------

def test_detail_page_with_a_result(login, clinician, patient, hospital_a):
    screening, result = make_screening(hospital_a, patient, clinician, status="done", covid=0.82)
    response = login(clinician).get(url("detail", pk=screening.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert DISCLAIMER in body
    assert "COVID-19 suspected" in body
    assert "0.820" in body and "0.500" in body  # P(COVID) and the threshold
    for label, value in (("COVID-19", "0.820"), ("Other pneumonia", "0.108"), ("Normal", "0.072")):
        assert label in body and value in body
    assert "cxrnet" in body and "1.2.0" in body and "ab12cd34ef56" in body and "pp-3" in body
    assert url("scan_preview", pk=screening.scan_id) in body
    assert url("heatmap", pk=result.pk) in body and "heatmap-toggle" in body
    assert url("scan_original", pk=screening.scan_id) in body
    assert url("status", pk=screening.pk) in body and 'data-final="true"' in body
    assert "js/screening-live.js" in body
    assert "Not reviewed yet" in body and "Add your review" in body
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="view", object_type="screening", object_id=str(screening.pk),
                                         actor=clinician).exists()


@pytest.mark.parametrize("state,words", [
    ("queued", "Waiting for a screening worker"),
    ("running", "The model is reading the film"),
    ("failed", "technical problem"),
    ("rejected", "could not be read as an image"),
    ("cannot_assess", "The model cannot assess this image"),
])
def test_detail_page_explains_each_state(login, clinician, patient, hospital_a, state, words):
    reason = "The image does not look like a frontal chest X-ray." if state == "cannot_assess" else ""
    screening, _ = make_screening(hospital_a, patient, clinician, status=state, reason=reason)
    body = login(clinician).get(url("detail", pk=screening.pk)).content.decode()
    assert words in body
    assert DISCLAIMER in body
    assert "AI suggestion" not in body and "Add your review" not in body
    assert f'data-final="{"false" if state in ("queued", "running") else "true"}"' in body
    if reason:
        assert reason in body


def test_viewer_sees_the_page_but_no_review_form(login, viewer, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician)
    body = login(viewer).get(url("detail", pk=screening.pk)).content.decode()
    assert "COVID-19 suspected" in body
    assert "Add your review" not in body


# --- Reviews -------------------------------------------------------------------------------------

def review_data(**overrides):
    data = {"decision": "confirm", "clinical_label": "covid", "radiological_signs": "yes",
            "reason": "Bilateral peripheral ground-glass opacities."}
    data.update(overrides)
    return data


def test_radiologist_confirms(login, radiologist, clinician, patient, hospital_a):
    screening, result = make_screening(hospital_a, patient, clinician)
    client = login(radiologist)
    response = client.post(url("review", pk=screening.pk), review_data(), follow=True)
    assert response.redirect_chain[-1][0] == url("detail", pk=screening.pk)
    assert "Your review was recorded." in response.content.decode()
    with scope(hospital=hospital_a):
        review = Review.objects.get(screening=screening)
    assert (review.decision, review.clinical_label, review.radiological_signs) == ("confirm", "covid", True)
    assert review.reviewer == radiologist and review.result == result
    body = response.content.decode()
    assert 'class="clinical-label">COVID-19<' in body and "Bilateral peripheral" in body


def test_override_needs_a_different_label(login, radiologist, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician)
    client = login(radiologist)
    response = client.post(url("review", pk=screening.pk), review_data(decision="override"))
    assert response.status_code == 200
    assert "An override needs a label different from the AI" in response.content.decode()
    response = client.post(url("review", pk=screening.pk), review_data(decision="confirm", clinical_label="normal"))
    assert "Confirming keeps the AI label" in response.content.decode()
    with scope(hospital=hospital_a):
        assert not Review.objects.filter(screening=screening).exists()
    client.post(url("review", pk=screening.pk),
                review_data(decision="override", clinical_label="normal", radiological_signs="no"))
    with scope(hospital=hospital_a):
        review = Review.objects.get(screening=screening)
    assert (review.decision, review.clinical_label, review.radiological_signs) == ("override", "normal", False)


def test_review_needs_reason_and_an_answer_on_signs(login, radiologist, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician)
    client = login(radiologist)
    data = review_data(reason="  ")
    del data["radiological_signs"]
    response = client.post(url("review", pk=screening.pk), data)
    assert response.status_code == 200
    assert response.content.decode().count("This field is required.") == 2
    with scope(hospital=hospital_a):
        assert not Review.objects.filter(screening=screening).exists()


def test_review_without_a_result_is_refused(login, radiologist, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician, status="cannot_assess", reason="Not a CXR.")
    response = login(radiologist).post(url("review", pk=screening.pk), review_data(), follow=True)
    assert "There is no AI result to review yet." in response.content.decode()
    with scope(hospital=hospital_a):
        assert not Review.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REGISTRAR, Role.HOSPITAL_ADMIN])
def test_roles_without_screening_review_get_403(login, make_member, clinician, patient, hospital_a, role):
    screening, _ = make_screening(hospital_a, patient, clinician)
    response = login(make_member(hospital_a, role)).post(url("review", pk=screening.pk), review_data())
    assert response.status_code == 403
    with scope(hospital=hospital_a):
        assert not Review.objects.exists()


def test_review_get_goes_back_to_the_page(login, radiologist, clinician, patient, hospital_a):
    screening, _ = make_screening(hospital_a, patient, clinician)
    response = login(radiologist).get(url("review", pk=screening.pk))
    assert response.status_code == 302 and response["Location"] == url("detail", pk=screening.pk)


# --- Applying the suggested status ---------------------------------------------------------------

def reviewed(hospital, patient, clinician, radiologist, *, signs: bool, lab: str | None):
    screening, result = make_screening(hospital, patient, clinician)
    from screening.services import review_create

    with scope(hospital=hospital):
        if lab:
            labtest_create(patient=patient, test_type="rt_pcr", result=lab,
                           sample_date=datetime.date.today(), actor=clinician)
        review_create(result=result, decision="confirm", clinical_label="covid", radiological_signs=signs,
                      reason="Read by a radiologist.", actor=radiologist)
    return screening


@pytest.mark.parametrize("signs,expected", [(True, Status.INFECTED), (False, Status.CARRIER)])
def test_clinician_applies_the_suggestion(login, clinician, radiologist, patient, hospital_a, signs, expected):
    screening = reviewed(hospital_a, patient, clinician, radiologist, signs=signs, lab="positive")
    client = login(clinician)
    body = client.get(url("detail", pk=screening.pk)).content.decode()
    assert "Suggested status" in body and f"Record {expected.label.lower()}" in body
    assert "This is only a suggestion: a clinician decides." in body
    response = client.post(url("apply_status", pk=screening.pk),
                           {"effective_date": datetime.date.today().isoformat(), "note": "Seen on the ward."},
                           follow=True)
    assert f"Status changed to {expected.label.lower()}." in response.content.decode()
    patient.refresh_from_db()
    assert patient.status == expected
    with scope(hospital=hospital_a):
        change = StatusChange.objects.filter(patient=patient).latest("changed_at")
    assert change.source == "screening_review" and change.to_status == expected
    assert f"screening #{screening.pk}" in change.reason and "Seen on the ward." in change.reason


def test_no_positive_lab_means_no_suggestion_and_a_refusal(login, clinician, radiologist, patient, hospital_a):
    screening = reviewed(hospital_a, patient, clinician, radiologist, signs=True, lab="negative")
    client = login(clinician)
    body = client.get(url("detail", pk=screening.pk)).content.decode()
    assert "Suggested status" not in body
    response = client.post(url("apply_status", pk=screening.pk),
                           {"effective_date": datetime.date.today().isoformat()}, follow=True)
    assert "does not suggest a status change" in response.content.decode()
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED


def test_only_clinicians_apply_the_suggestion(login, radiologist, clinician, patient, hospital_a):
    screening = reviewed(hospital_a, patient, clinician, radiologist, signs=True, lab="positive")
    client = login(radiologist)
    body = client.get(url("detail", pk=screening.pk)).content.decode()
    assert "Suggested status" in body and "A clinician can record it." in body
    assert url("apply_status", pk=screening.pk) not in body
    response = client.post(url("apply_status", pk=screening.pk), {"effective_date": datetime.date.today().isoformat()})
    assert response.status_code == 403
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED


# --- Worklist and the patient page ---------------------------------------------------------------

def test_worklist_filters_and_audits(login, clinician, radiologist, patient, hospital_a):
    done, result = make_screening(hospital_a, patient, clinician, status="done", seed=1)
    reviewed_one, result2 = make_screening(hospital_a, patient, clinician, status="done", seed=2)
    failed, _ = make_screening(hospital_a, patient, clinician, status="failed", seed=3, reason="Worker lost.")
    from screening.services import review_create

    with scope(hospital=hospital_a):
        review_create(result=result2, decision="override", clinical_label="normal", radiological_signs=False,
                      reason="Clear lungs.", actor=radiologist)
    client = login(radiologist)

    def listed(query=""):
        response = client.get(url("worklist") + query)
        assert response.status_code == 200
        return {s.pk for s in response.context["page"]}

    assert listed() == {done.pk, reviewed_one.pk, failed.pk}
    assert listed("?show=unreviewed") == {done.pk}
    assert listed("?show=failed") == {failed.pk}
    assert listed("?show=nonsense") == {done.pk, reviewed_one.pk, failed.pk}
    body = client.get(url("worklist")).content.decode()
    assert "Lovelace, Ada" in body and "Not reviewed" in body and "Normal" in body
    with scopes_disabled():
        event = AuditEvent.objects.filter(action="list", object_type="patient", actor=radiologist).latest("seq")
    assert event.detail["patients"] == [patient.pk]


def test_worklist_is_paginated(login, clinician, patient, hospital_a):
    for seed in range(27):
        make_screening(hospital_a, patient, clinician, status="queued", seed=seed)
    client = login(clinician)
    first = client.get(url("worklist"))
    assert len(first.context["page"].object_list) == 25
    second = client.get(url("worklist") + "?page=2")
    assert len(second.context["page"].object_list) == 2


def test_patient_page_lists_screenings_and_upload_button(login, clinician, radiologist, patient, hospital_a):
    done, result = make_screening(hospital_a, patient, clinician, status="done", covid=0.82, seed=1)
    queued, _ = make_screening(hospital_a, patient, clinician, status="queued", seed=2)
    from screening.services import review_create

    with scope(hospital=hospital_a):
        review_create(result=result, decision="confirm", clinical_label="covid", radiological_signs=True,
                      reason="Typical.", actor=radiologist)
    body = login(clinician).get(reverse("patients:detail", kwargs={"hospital_slug": "alpha",
                                                                   "pk": patient.pk})).content.decode()
    assert url("upload", patient_pk=patient.pk) in body and "Upload X-rays" in body
    assert url("detail", pk=done.pk) in body and url("detail", pk=queued.pk) in body
    assert "AI suggestion: COVID-19, P(COVID-19) 0.82" in body
    assert "Review: COVID-19 (confirm the ai label, radiological signs yes)" in body
    assert "Waiting for the model." in body
    assert body.index(f"screening-{queued.pk}") < body.index(f"screening-{done.pk}")  # newest first


def test_patient_page_hides_upload_from_viewers(login, viewer, patient):
    body = login(viewer).get(reverse("patients:detail", kwargs={"hospital_slug": "alpha",
                                                                "pk": patient.pk})).content.decode()
    assert "Upload X-rays" not in body
    assert "No X-rays uploaded." in body


def test_json_upload_of_a_dicom_named_png(login, clinician, patient, hospital_a):
    """The content decides the format, not the name: a PNG called .dcm is stored as PNG."""
    response = login(clinician).post(url("upload", patient_pk=patient.pk),
                                     {"files": [upload_file("film.dcm", png_bytes(seed=9), "application/dicom")]},
                                     HTTP_ACCEPT="application/json")
    assert json.loads(response.content)["files"][0]["ok"] is True
    assert scans_of(hospital_a, patient)[0].format == "png"


# --- Review worklist -----------------------------------------------------------------------------

def queued_for_review(hospital, patient, actor, covid, *, minutes_ago, seed):
    """A done, unreviewed screening uploaded `minutes_ago` minutes ago."""
    from django.utils import timezone

    screening, result = make_screening(hospital, patient, actor, status="done", covid=covid, seed=seed)
    with scope(hospital=hospital):
        Screening.objects.filter(pk=screening.pk).update(
            created_at=timezone.now() - datetime.timedelta(minutes=minutes_ago))
    return screening, result


def review_queue(client, query="", **headers):
    return client.get(url("review_queue") + query, **headers)


HTMX_LIST = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "review-queue"}
HTMX_PANE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "reading-pane"}


def test_review_queue_orders_by_covid_probability_then_longest_waiting(login, clinician, radiologist, patient,
                                                                        hospital_a):
    low, _ = queued_for_review(hospital_a, patient, clinician, 0.30, minutes_ago=90, seed=1)
    high, _ = queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=2)
    tie_newer, _ = queued_for_review(hospital_a, patient, clinician, 0.60, minutes_ago=10, seed=3)
    tie_older, _ = queued_for_review(hospital_a, patient, clinician, 0.60, minutes_ago=40, seed=4)
    reviewed, reviewed_result = queued_for_review(hospital_a, patient, clinician, 0.95, minutes_ago=60, seed=5)
    make_screening(hospital_a, patient, clinician, status="queued", seed=6)
    make_screening(hospital_a, patient, clinician, status="failed", seed=7, reason="Worker lost.")
    from screening.services import review_create

    with scope(hospital=hospital_a):
        review_create(result=reviewed_result, decision="confirm", clinical_label="covid", radiological_signs=True,
                      reason="Typical.", actor=radiologist)
    response = review_queue(login(radiologist))
    assert response.status_code == 200
    assert [s.pk for s in response.context["items"]] == [high.pk, tie_older.pk, tie_newer.pk, low.pk]
    assert response.context["selected"].pk == high.pk  # the first one is on show
    body = response.content.decode()
    assert body.index(f'data-screening="{high.pk}"') < body.index(f'data-screening="{low.pk}"')
    with scopes_disabled():
        event = AuditEvent.objects.filter(action="list", object_type="patient", actor=radiologist).latest("seq")
    assert event.detail["patients"] == [patient.pk]


def test_review_queue_page_shows_the_film_the_ai_output_and_the_shortcuts(login, clinician, radiologist, patient,
                                                                          hospital_a):
    first, _ = queued_for_review(hospital_a, patient, clinician, 0.81, minutes_ago=5, seed=1)
    second, second_result = queued_for_review(hospital_a, patient, clinician, 0.40, minutes_ago=5, seed=2)
    client = login(radiologist)
    response = review_queue(client, f"?screening={second.pk}")
    body = response.content.decode()
    assert response.context["selected"].pk == second.pk
    assert url("scan_preview", pk=second.scan_id) in body and url("heatmap", pk=second_result.pk) in body
    assert url("scan_preview", pk=first.scan_id) not in body
    assert DISCLAIMER in body and "AI suggestion" in body and "0.400" in body
    for key in ('aria-keyshortcuts="c"', 'aria-keyshortcuts="o"', 'aria-keyshortcuts="z"', 'aria-keyshortcuts="h"',
                'aria-keyshortcuts="Control+Enter"', "<kbd>j</kbd>", "<kbd>c</kbd>", "<kbd>o</kbd>"):
        assert key in body, key
    assert 'name="from" value="queue"' in body
    assert "vendor/htmx/htmx.min.js" in body and "js/screening-worklist.js" in body and "<script>" not in body
    # The AI's label is the form's starting point; a confirm keeps it.
    assert response.context["review_form"].initial["clinical_label"] == second_result.label
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="view", object_type="screening", object_id=str(second.pk),
                                         actor=radiologist).exists()
    # A screening that is not (or no longer) in the queue is not shown: the first one is.
    for query in (f"?screening={MISSING_ID}", "?screening=abc"):
        assert review_queue(client, query).context["selected"].pk == first.pk


MISSING_ID = 987654321


def test_review_queue_refresh_answers_204_until_the_queue_changes(login, clinician, radiologist, patient,
                                                                   hospital_a):
    first, _ = queued_for_review(hospital_a, patient, clinician, 0.70, minutes_ago=5, seed=1)
    client = login(radiologist)
    shown = review_queue(client).context["signature"]
    with scopes_disabled():
        audited = AuditEvent.objects.filter(actor=radiologist).count()
    unchanged = review_queue(client, f"?shown={shown}", **HTMX_LIST)
    assert unchanged.status_code == 204 and unchanged.content == b""
    with scopes_disabled():
        assert AuditEvent.objects.filter(actor=radiologist).count() == audited  # nothing shown, nothing read
    newer, _ = queued_for_review(hospital_a, patient, clinician, 0.95, minutes_ago=1, seed=2)
    changed = review_queue(client, f"?shown={shown}", **HTMX_LIST)
    body = changed.content.decode()
    assert changed.status_code == 200
    assert body.lstrip().startswith('<section id="review-queue"') and "<html" not in body
    assert body.index(f'data-screening="{newer.pk}"') < body.index(f'data-screening="{first.pk}"')
    assert f'value="{newer.pk},{first.pk}"' in body  # the next refresh sends this
    assert 'id="reading-pane"' not in body


def test_review_queue_pane_alone_for_htmx(login, clinician, radiologist, patient, hospital_a):
    queued_for_review(hospital_a, patient, clinician, 0.70, minutes_ago=5, seed=1)
    other, _ = queued_for_review(hospital_a, patient, clinician, 0.20, minutes_ago=5, seed=2)
    response = review_queue(login(radiologist), f"?screening={other.pk}", **HTMX_PANE)
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="reading-pane"') and f'data-screening="{other.pk}"' in body
    assert url("scan_preview", pk=other.scan_id) in body and 'id="review-queue"' not in body


def test_review_queue_empty(login, radiologist):
    body = review_queue(login(radiologist)).content.decode()
    assert "Nothing is waiting for review" in body and "Nothing to review" in body


def test_confirm_from_the_queue_goes_back_to_the_next_one(login, clinician, radiologist, patient, hospital_a):
    first, first_result = queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=1)
    second, _ = queued_for_review(hospital_a, patient, clinician, 0.50, minutes_ago=5, seed=2)
    client = login(radiologist)
    response = client.post(url("review", pk=first.pk), {
        "from": "queue", "decision": "confirm", "clinical_label": first_result.label, "radiological_signs": "yes",
        "reason": "Bilateral peripheral opacities."})
    assert response.status_code == 302 and response["Location"] == url("review_queue")
    page = client.get(response["Location"])
    assert [s.pk for s in page.context["items"]] == [second.pk] and page.context["selected"].pk == second.pk
    assert f"Your review of screening #{first.pk} was recorded." in page.content.decode()
    with scope(hospital=hospital_a):
        review = Review.objects.get(screening=first)
    assert (review.decision, review.clinical_label, review.radiological_signs, review.reviewer) == (
        "confirm", first_result.label, True, radiologist)


def test_override_from_the_queue(login, clinician, radiologist, patient, hospital_a):
    first, first_result = queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=1)
    client = login(radiologist)
    response = client.post(url("review", pk=first.pk), {
        "from": "queue", "decision": "override", "clinical_label": "normal", "radiological_signs": "no",
        "reason": "Projection artefact; clear lungs."})
    assert response.status_code == 302
    assert list(review_queue(client).context["items"]) == []
    with scope(hospital=hospital_a):
        assert Review.objects.get(screening=first).clinical_label == "normal"


def test_a_bad_review_from_the_queue_keeps_the_input(login, clinician, radiologist, patient, hospital_a):
    first, first_result = queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=1)
    queued_for_review(hospital_a, patient, clinician, 0.95, minutes_ago=5, seed=2)
    response = login(radiologist).post(url("review", pk=first.pk), {
        "from": "queue", "decision": "confirm", "clinical_label": "normal", "radiological_signs": "no",
        "reason": "Looks clear."})
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["selected"].pk == first.pk  # the same film, not the queue's first
    assert "Confirming keeps the AI label; choose override to change it." in body
    assert "Looks clear." in body
    with scope(hospital=hospital_a):
        assert not Review.objects.filter(screening=first).exists()


def test_review_queue_viewer_sees_no_form_and_post_is_refused(login, viewer, clinician, patient, hospital_a):
    queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=1)
    client = login(viewer)
    body = review_queue(client).content.decode()
    assert "A radiologist or clinician reviews this result." in body and 'id="review-form"' not in body
    assert client.post(url("review_queue")).status_code == 405


def test_review_queue_of_another_hospital_is_404(client, make_member, hospital_b, clinician, patient, hospital_a):
    queued_for_review(hospital_a, patient, clinician, 0.90, minutes_ago=5, seed=1)
    client.force_login(make_member(hospital_b, Role.RADIOLOGIST))
    assert client.get(url("review_queue")).status_code == 404
