"""Each resource the facade emits: read by id, validated with fhir.resources (R4B), and
its content checked against the records it is built from."""

import datetime

from django_scopes import scope

from patients import services as patient_services

from .base import entries, fhir_json, read_url, search_url, validate
from .conftest import MODEL_SHA256, OTHER_MODEL_SHA256


def test_organization_is_the_hospital(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    org = fhir_json(api.get(read_url("Organization", a.hospital.pk)))
    assert org["name"] == "Alpha General" and org["active"] is True
    assert org["identifier"] == [{"system": "urn:hospital:slug", "value": "alpha"}]
    bundle = fhir_json(api.get(search_url("Organization")))
    assert [r["id"] for r in entries(bundle, "Organization")] == [str(a.hospital.pk)]


def test_patient_has_mrn_name_gender_birth_date_telecom(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    with scope(hospital=a.hospital):
        patient_services.patient_update(patient=a.patient, actor=a.admin, phone="+41 44 555 01 02",
                                        email="alpha.patient@example.org")
    body = fhir_json(api.get(read_url("Patient", a.patient.pk)))
    assert body["resourceType"] == "Patient" and body["id"] == str(a.patient.pk)
    mrn = body["identifier"][0]
    assert mrn["system"] == "urn:hospital:alpha:mrn" and mrn["value"] == "ALPHA-MRN-7731"
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert body["name"] == [{"use": "official", "family": "ALPHAfamily", "given": ["ALPHAgiven"]}]
    assert body["gender"] == "female" and body["birthDate"] == "1980-01-02"
    assert {"system": "phone", "value": "+41 44 555 01 02"} in body["telecom"]
    assert {"system": "email", "value": "alpha.patient@example.org"} in body["telecom"]
    assert body["managingOrganization"]["reference"] == f"Organization/{a.hospital.pk}"
    assert body["meta"]["lastUpdated"]


def test_observation_is_the_ai_result_tagged_ai_asserted(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    body = fhir_json(api.get(read_url("Observation", a.result.pk)))
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
            "display": "Artificial Intelligence asserted"} in body["meta"]["security"]
    assert body["subject"] == {"reference": f"Patient/{a.patient.pk}"}
    assert body["device"]["reference"] == f"Device/{MODEL_SHA256}"
    assert body["derivedFrom"] == [{"reference": f"Media/{a.scan.pk}"}]  # a PNG film
    probabilities = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in body["component"]}
    assert probabilities == a.result.probabilities
    assert body["valueCodeableConcept"]["coding"][0]["code"] == "covid"
    assert body["interpretation"][0]["coding"][0]["code"] == "POS"
    assert "screening aid, not a diagnosis" in body["note"][0]["text"].lower()
    # The DICOM film's result points at an ImagingStudy and says negative.
    dicom = fhir_json(api.get(read_url("Observation", a.dicom_result.pk)))
    assert dicom["derivedFrom"] == [{"reference": f"ImagingStudy/{a.dicom_scan.pk}"}]
    assert dicom["interpretation"][0]["coding"][0]["code"] == "NEG"
    assert dicom["device"]["reference"] == f"Device/{OTHER_MODEL_SHA256}"


def test_diagnostic_report_covers_the_review_and_references_the_observations(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    body = fhir_json(api.get(read_url("DiagnosticReport", a.screening.pk)))
    assert body["status"] == "final"
    assert body["result"] == [{"reference": f"Observation/{a.result.pk}"}]
    assert body["media"][0]["link"] == {"reference": f"Media/{a.scan.pk}"}
    assert "ALPHAreview" in body["conclusion"] and "Confirm" in body["conclusion"]
    codes = {(c["system"], c["code"]) for c in body["conclusionCode"][0]["coding"]}
    assert ("http://snomed.info/sct", "840539006") in codes
    assert ("urn:hospital:codesystem:cxr-ai-label", "covid") in codes
    # Not reviewed yet: preliminary, no conclusion code, the AI's label and the disclaimer.
    pending = fhir_json(api.get(read_url("DiagnosticReport", a.dicom_screening.pk)))
    assert pending["status"] == "preliminary" and "conclusionCode" not in pending
    assert "not a diagnosis" in pending["conclusion"]
    assert pending["imagingStudy"] == [{"reference": f"ImagingStudy/{a.dicom_scan.pk}"}]


def test_imaging_study_for_dicom_and_media_for_png(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    study = fhir_json(api.get(read_url("ImagingStudy", a.dicom_scan.pk)))
    assert study["identifier"] == [{"system": "urn:dicom:uid", "value": f"urn:oid:{a.dicom_scan.study_uid}"}]
    assert study["series"][0]["uid"] == a.dicom_scan.series_uid
    assert study["subject"] == {"reference": f"Patient/{a.patient.pk}"}
    assert "Doe" not in str(study) and "PHI-12345" not in str(study), "no DICOM header PHI"
    media = fhir_json(api.get(read_url("Media", a.scan.pk)))
    assert media["content"]["contentType"] == "image/png"
    assert (media["width"], media["height"]) == (a.scan.width, a.scan.height)
    assert "ALPHA-film.png" not in str(media), "the client's file name is not shown"
    # A scan is one or the other, never both.
    assert api.get(read_url("Media", a.dicom_scan.pk)).status_code == 404
    assert api.get(read_url("ImagingStudy", a.scan.pk)).status_code == 404


def test_device_is_the_model_with_its_sha256(worlds, fhir_api):
    _, api = fhir_api
    body = fhir_json(api.get(read_url("Device", MODEL_SHA256)))
    assert body["identifier"] == [{"system": "urn:hospital:model-sha256", "value": MODEL_SHA256}]
    assert body["deviceName"] == [{"name": "cxrnet", "type": "model-name"}]
    assert body["version"] == [{"value": "1.2.0"}]
    bundle = fhir_json(api.get(search_url("Device")))
    assert sorted(r["id"] for r in entries(bundle, "Device")) == sorted([MODEL_SHA256, OTHER_MODEL_SHA256])


def test_a_device_is_named_and_dated_by_its_first_result(worlds, fhir_api):
    """A later result of the same model (here under another name) changes neither."""
    from screening.models import AiResult
    from tests.factories import airesult_for, screening_for

    a, _ = worlds
    _, api = fhir_api
    first_used = datetime.datetime(2026, 3, 1, 8, 30, tzinfo=datetime.UTC)
    with scope(hospital=a.hospital):
        AiResult.objects.filter(pk=a.result.pk).update(created_at=first_used)
        later = airesult_for(screening_for(a.patient, actor=a.clinician, filename="later.png"))
        AiResult.objects.filter(pk=later.pk).update(model_name="cxrnet-renamed")
    body = fhir_json(api.get(read_url("Device", MODEL_SHA256)))
    assert body["meta"]["lastUpdated"].startswith("2026-03-01T08:30:00")
    assert body["deviceName"] == [{"name": "cxrnet", "type": "model-name"}]
    bundle = fhir_json(api.get(search_url("Device")))
    assert sorted(r["id"] for r in entries(bundle, "Device")) == sorted([MODEL_SHA256, OTHER_MODEL_SHA256])


def test_condition_follows_the_status_history(worlds, fhir_api):
    """suspected -> carrier (the world) -> infected -> recovered: a carrier Condition that
    became inactive when signs appeared and an infected one resolved on recovery."""
    a, _ = worlds
    _, api = fhir_api
    today = datetime.date.today()
    carrier = fhir_json(api.get(read_url("Condition", a.status_change.pk)))
    assert carrier["clinicalStatus"]["coding"][0]["code"] == "active"
    assert carrier["verificationStatus"]["coding"][0]["code"] == "confirmed"
    codes = {(c["system"], c["code"]) for c in carrier["code"]["coding"]}
    assert ("http://snomed.info/sct", "189486241000119100") in codes
    assert ("http://hl7.org/fhir/sid/icd-10", "U07.1") in codes
    assert carrier["onsetDateTime"] == today.isoformat() and "abatementDateTime" not in carrier

    with scope(hospital=a.hospital):
        infected = patient_services.patient_change_status(
            patient=a.patient, to_status="infected", effective_date=today, reason="signs", actor=a.clinician)
        patient_services.patient_change_status(
            patient=a.patient, to_status="recovered", effective_date=today, reason="well", actor=a.clinician)
    carrier = fhir_json(api.get(read_url("Condition", a.status_change.pk)))
    assert carrier["clinicalStatus"]["coding"][0]["code"] == "inactive"
    assert carrier["abatementDateTime"] == today.isoformat()
    body = fhir_json(api.get(read_url("Condition", infected.pk)))
    assert body["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert ("http://snomed.info/sct", "840539006") in {(c["system"], c["code"]) for c in body["code"]["coding"]}
    # A status change that is no infected/carrier period is no Condition.
    with scope(hospital=a.hospital):
        recovered = a.patient.status_changes.get(to_status="recovered")
    assert api.get(read_url("Condition", recovered.pk)).status_code == 404


def test_capability_statement_lists_resources_interactions_and_search_params(worlds, fhir_api):
    _, api = fhir_api
    from django.urls import reverse

    body = fhir_json(api.get(reverse("fhir:metadata", kwargs={"hospital_slug": "alpha"})))
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(resources) == {"Organization", "Patient", "Observation", "DiagnosticReport", "ImagingStudy",
                              "Media", "Device", "Condition"}
    for resource in resources.values():
        assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
    params = {t: {p["name"] for p in r["searchParam"]} for t, r in resources.items()}
    assert {"identifier", "_lastUpdated", "_count"} <= params["Patient"]
    assert {"patient", "date", "_lastUpdated"} <= params["Observation"]
    assert {"patient", "_lastUpdated"} <= params["DiagnosticReport"]


def test_validation_catches_a_malformed_resource():
    """The validator the tests rely on refuses what FHIR refuses."""
    import pytest
    from pydantic.v1 import ValidationError

    with pytest.raises(ValidationError):
        validate({"resourceType": "Observation", "status": "final"})  # code is required
    with pytest.raises(ValidationError):
        validate({"resourceType": "Patient", "nickname": "x"})  # no such element
