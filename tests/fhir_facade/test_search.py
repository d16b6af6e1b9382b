"""Search parameters of the facade (identifier, patient, date, _lastUpdated with
prefixes, clinical-status, _count paging) and the 400 OperationOutcome for what it does
not understand. Every Bundle is validated with fhir.resources (`fhir_json`)."""

import datetime

import pytest
from django_scopes import scope

from patients import services as patient_services
from patients.models import Patient, StatusChange
from screening.models import AiResult, Review
from tests.factories import screening_for

from .base import assert_outcome, entries, fhir_json, ids, read_url, search_url

UTC = datetime.timezone.utc


def search(api, resource_type, **params):
    return fhir_json(api.get(search_url(resource_type), params))


# --- Patient?identifier= ------------------------------------------------------------------------

def test_patient_identifier_by_value_and_by_system_and_value(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    assert ids(search(api, "Patient", identifier="ALPHA-MRN-7731")) == [str(a.patient.pk)]
    assert ids(search(api, "Patient", identifier="urn:hospital:alpha:mrn|ALPHA-MRN-7731")) == [str(a.patient.pk)]
    assert ids(search(api, "Patient", identifier="urn:hospital:alpha:mrn|")) == [str(a.patient.pk)]
    # Another system (B's MRN system included) or B's MRN: nothing, never B's patient.
    assert search(api, "Patient", identifier="urn:hospital:beta:mrn|ALPHA-MRN-7731")["total"] == 0
    body = search(api, "Patient", identifier="BETA-MRN-7731")
    assert body["total"] == 0 and "entry" not in body
    assert search(api, "Patient", identifier="urn:hospital:beta:mrn|BETA-MRN-7731")["total"] == 0


def test_patient_search_without_parameters_lists_own_patients_only(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    body = search(api, "Patient")
    assert ids(body) == [str(a.patient.pk)] and body["total"] == 1
    assert body["entry"][0]["fullUrl"] == f"http://testserver/fhir/alpha/Patient/{a.patient.pk}"
    assert body["link"][0]["relation"] == "self"


# --- Observation?patient=&date= ---------------------------------------------------------------------

def test_observation_by_patient_in_every_reference_form(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    expected = sorted([str(a.result.pk), str(a.dicom_result.pk)])
    for value in (str(a.patient.pk), f"Patient/{a.patient.pk}",
                  f"http://testserver/fhir/alpha/Patient/{a.patient.pk}"):
        assert sorted(ids(search(api, "Observation", patient=value))) == expected
    assert sorted(ids(search(api, "Observation", subject=f"Patient/{a.patient.pk}"))) == expected
    # B's patient is like one that does not exist: an empty Bundle.
    assert search(api, "Observation", patient=b.patient.pk)["total"] == 0
    assert search(api, "Observation", patient="not-an-id")["total"] == 0
    assert_outcome(api.get(search_url("Observation"), {"patient": "Observation/1"}), 400, "invalid")


@pytest.fixture
def dated_results(worlds):
    """A's two AI results made at 2024-05-01T10:00Z (PNG) and 2024-06-15T00:00Z (DICOM)."""
    a, _ = worlds
    with scope(hospital=a.hospital):
        AiResult.objects.filter(pk=a.result.pk).update(created_at=datetime.datetime(2024, 5, 1, 10, tzinfo=UTC))
        AiResult.objects.filter(pk=a.dicom_result.pk).update(
            created_at=datetime.datetime(2024, 6, 15, tzinfo=UTC))
    return str(a.result.pk), str(a.dicom_result.pk)


@pytest.mark.parametrize("param", ["date", "_lastUpdated"])
@pytest.mark.parametrize("value, expected", [
    ("2024-05-01", "may"),
    ("eq2024-05", "may"),
    ("2024", "both"),
    ("ne2024-05", "june"),
    ("ge2024-05-01", "both"),
    ("gt2024-05-01", "june"),  # after the whole day
    ("lt2024-06-15", "may"),
    ("le2024-06-15", "both"),  # up to the end of that day
    ("lt2024-06", "may"),
    ("ge2024-05-01T10:00:00Z", "both"),
    ("gt2024-05-01T10:00:00Z", "june"),
    ("lt2024-05-01T12:00:00+02:00", "none"),  # 10:00 UTC is not before 10:00 UTC
    ("le2024-05-01T12:00:00+02:00", "may"),
    ("lt2024-05-01T12:00:01 02:00", "may"),  # an unencoded '+' arrives as a space
    ("ge2025", "none"),
])
def test_date_prefixes(worlds, fhir_api, dated_results, param, value, expected):
    _, api = fhir_api
    may, june = dated_results
    want = {"may": [may], "june": [june], "both": sorted([may, june]), "none": []}[expected]
    assert sorted(ids(search(api, "Observation", **{param: value}))) == want


def test_repeated_date_parameters_make_a_range(worlds, fhir_api, dated_results):
    _, api = fhir_api
    may, june = dated_results
    response = api.get(search_url("Observation") + "?date=ge2024-05-02&date=lt2024-07-01")
    assert ids(fhir_json(response)) == [june]
    a, _ = worlds
    response = api.get(search_url("Observation") + f"?date=ge2024-05&date=lt2024-06&patient={a.patient.pk}")
    assert ids(fhir_json(response)) == [may]


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "2024-02-30", "sa2024-01-01", "2024-05-01T10",
                                   "2024-05-01T25:00:00Z"])
def test_malformed_dates_are_400(worlds, fhir_api, value):
    _, api = fhir_api
    body = assert_outcome(api.get(search_url("Observation"), {"date": value}), 400, "invalid")
    assert "date" in body["issue"][0]["diagnostics"].lower()


# --- DiagnosticReport?patient= and _lastUpdated over reviews ----------------------------------------

def test_diagnostic_report_by_patient(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    body = search(api, "DiagnosticReport", patient=a.patient.pk)
    assert sorted(ids(body)) == sorted([str(a.screening.pk), str(a.dicom_screening.pk)])
    assert search(api, "DiagnosticReport", patient=f"Patient/{b.patient.pk}")["total"] == 0


def test_diagnostic_report_last_updated_follows_the_latest_review(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    with scope(hospital=a.hospital):
        Review.objects.filter(pk=a.review.pk).update(reviewed_at=datetime.datetime(2031, 1, 2, tzinfo=UTC))
    body = search(api, "DiagnosticReport", _lastUpdated="ge2031")
    assert ids(body) == [str(a.screening.pk)]
    assert entries(body)[0]["meta"]["lastUpdated"].startswith("2031-01-02T00:00:00")
    # The unreviewed screening's lastUpdated is its AI result's time.
    assert ids(search(api, "DiagnosticReport", _lastUpdated="lt2031")) == [str(a.dicom_screening.pk)]


def test_a_screening_without_an_ai_result_is_no_diagnostic_report(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    with scope(hospital=a.hospital):
        queued = screening_for(a.patient, actor=a.clinician, filename="queued.png")
        cannot = screening_for(a.patient, actor=a.clinician, status="cannot_assess", reason="no lungs", seed=3)
    reported = sorted([str(a.screening.pk), str(a.dicom_screening.pk)])
    for params in ({}, {"patient": a.patient.pk}, {"date": "ge2000"}, {"_count": "1"}):
        body = search(api, "DiagnosticReport", **params)
        assert body["total"] == 2, params
    assert sorted(ids(search(api, "DiagnosticReport", patient=a.patient.pk))) == reported
    for screening in (queued, cannot):
        assert_outcome(api.get(read_url("DiagnosticReport", screening.pk)), 404, "not-found")


# --- Patient?_lastUpdated= ------------------------------------------------------------------------------

def test_patient_last_updated(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    with scope(hospital=a.hospital):
        Patient.objects.filter(pk=a.patient.pk).update(updated_at=datetime.datetime(2024, 3, 3, 8, tzinfo=UTC))
    assert ids(search(api, "Patient", _lastUpdated="ge2024-03-03")) == [str(a.patient.pk)]
    assert ids(search(api, "Patient", _lastUpdated="gt2024-03-03")) == []
    assert ids(search(api, "Patient", _lastUpdated="le2024-03-03T08:00:00Z")) == [str(a.patient.pk)]
    assert ids(search(api, "Patient", _lastUpdated="lt2024-03-03T08:00:00Z")) == []


# --- Condition --------------------------------------------------------------------------------------------

def test_condition_by_patient_and_clinical_status(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    carrier = str(a.status_change.pk)
    assert ids(search(api, "Condition", patient=a.patient.pk)) == [carrier]
    assert ids(search(api, "Condition", **{"clinical-status": "active"})) == [carrier]
    assert ids(search(api, "Condition", **{"clinical-status": "resolved,inactive"})) == []
    with scope(hospital=a.hospital):
        patient_services.patient_change_status(patient=a.patient, to_status="recovered",
                                               effective_date=datetime.date.today(), reason="well",
                                               actor=a.clinician)
        recovered_at = StatusChange.objects.get(patient=a.patient, to_status="recovered").changed_at
    assert ids(search(api, "Condition", **{"clinical-status": "resolved"})) == [carrier]
    assert ids(search(api, "Condition", **{"clinical-status": "active"})) == []
    # Ending the period updated the Condition.
    stamp = recovered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ids(search(api, "Condition", _lastUpdated=f"ge{stamp}")) == [carrier]
    assert search(api, "Condition", patient=b.patient.pk)["total"] == 0
    assert_outcome(api.get(search_url("Condition"), {"clinical-status": "cured"}), 400, "invalid")


# --- _count paging ----------------------------------------------------------------------------------------

def test_count_pages_through_every_match_once(worlds, fhir_api):
    _, api = fhir_api
    first = search(api, "Observation", _count=1)
    assert first["total"] == 2 and len(first["entry"]) == 1
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "_count=1" in links["next"]
    second = fhir_json(api.get(links["next"]))
    assert "total" not in second and len(second["entry"]) == 1  # counted on the first page only
    assert "next" not in {link["relation"] for link in second["link"]}
    a, _ = worlds
    assert sorted(ids(first) + ids(second)) == sorted([str(a.result.pk), str(a.dicom_result.pk)])


def test_next_link_keeps_the_search_parameters(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    first = search(api, "Observation", _count=1, patient=a.patient.pk)
    next_url = {link["relation"]: link["url"] for link in first["link"]}["next"]
    assert f"patient={a.patient.pk}" in next_url


def test_count_is_capped_and_zero_gives_the_total_only(worlds, fhir_api, settings):
    _, api = fhir_api
    settings.API_MAX_PAGE_SIZE = 1
    body = search(api, "Observation", _count=500)
    assert len(body["entry"]) == 1 and body["total"] == 2
    assert any(link["relation"] == "next" for link in body["link"])
    empty = search(api, "Observation", _count=0)
    assert empty["total"] == 2 and "entry" not in empty


def test_total_is_counted_as_asked(worlds, fhir_api):
    _, api = fhir_api
    assert "total" not in search(api, "Observation", _total="none")
    first = search(api, "Observation", _count=1, _total="accurate")
    assert first["total"] == 2
    next_url = {link["relation"]: link["url"] for link in first["link"]}["next"]
    assert "_total=accurate" in next_url
    assert fhir_json(api.get(next_url))["total"] == 2
    assert search(api, "Observation", _total="estimate")["total"] == 2


@pytest.mark.parametrize("query, word", [
    ("_total=some", "_total"),
    ("_count=-1", "_count"),
    ("_count=ten", "_count"),
    ("_cursor=abc", "_cursor"),
    ("name=smith", "name"),
    ("identifier:exact=ALPHA-MRN-7731", "modifier"),
    ("identifier=", "empty"),
    ("_sort=-_lastUpdated", "_sort"),
])
def test_bad_search_parameters_are_400(worlds, fhir_api, query, word):
    _, api = fhir_api
    body = assert_outcome(api.get(search_url("Patient") + "?" + query), 400, "invalid")
    assert word in body["issue"][0]["diagnostics"]


def test_device_search_by_identifier(worlds, fhir_api):
    from .conftest import MODEL_SHA256

    _, api = fhir_api
    body = search(api, "Device", identifier=f"urn:hospital:model-sha256|{MODEL_SHA256}")
    assert ids(body) == [MODEL_SHA256]
    assert search(api, "Device", identifier="urn:other|" + MODEL_SHA256)["total"] == 0


def test_scans_by_patient(worlds, fhir_api):
    a, b = worlds
    _, api = fhir_api
    assert ids(search(api, "ImagingStudy", patient=a.patient.pk)) == [str(a.dicom_scan.pk)]
    assert ids(search(api, "Media", patient=a.patient.pk)) == [str(a.scan.pk)]
    assert search(api, "Media", patient=b.patient.pk)["total"] == 0
