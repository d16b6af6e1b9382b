"""The real services announce their changes: one delivery per subscribed endpoint, in
the same transaction, with ids and states a partner needs and no names or free text."""

import datetime
import json

import pytest
from django.db import transaction
from django_scopes import scope, scopes_disabled

from patients.services import patient_change_status
from screening import services as screening_services
from screening.models import ScreeningStatus
from tests.factories import airesult_for, screening_for
from webhooks.models import Delivery

PREDICTION = {
    "probabilities": {"covid": 0.91, "pneumonia": 0.06, "normal": 0.03}, "label": "covid", "covid_probability": 0.91,
    "covid_positive": True, "decision": "covid_suspected", "threshold": 0.5, "model_name": "cxrnet",
    "model_version": "1.0.0", "model_sha256": "f" * 64, "preprocessing_version": "pp-1", "quality": {},
    "timings_ms": {"predict": 3.0},
}


def deliveries(event=None):
    with scopes_disabled():
        rows = Delivery.objects.order_by("id")
        return list(rows.filter(event=event) if event else rows)


def body(delivery) -> dict:
    return json.loads(delivery.body)


def assert_no_phi(delivery, hook):
    for secret in (hook.patient.given_name, hook.patient.family_name, "Secretreason", "Secretnote"):
        assert secret not in delivery.body


def test_a_status_change_announces_patient_status_changed(hook):
    today = datetime.date.today()
    with scope(hospital=hook.hospital):
        change = patient_change_status(patient=hook.patient, to_status="infected", effective_date=today,
                                       reason="Secretreason", actor=hook.clinician)
    [delivery] = deliveries()
    sent = body(delivery)
    assert (delivery.event, sent["event"], sent["hospital"]) == ("patient.status_changed",) * 2 + ("hook",)
    assert sent["data"] == {
        "patient": {"id": hook.patient.pk, "mrn": "HOOK-0001"},
        "status_change": {"id": change.pk, "from": "suspected", "to": "infected", "effective_date": today.isoformat(),
                          "source": "clinician", "lab_test_id": None, "changed_at": change.changed_at.isoformat()},
    }
    assert_no_phi(delivery, hook)


def test_a_refused_or_rolled_back_status_change_announces_nothing(hook):
    today = datetime.date.today()
    with scope(hospital=hook.hospital):
        with pytest.raises(RuntimeError), transaction.atomic():
            patient_change_status(patient=hook.patient, to_status="infected", effective_date=today, reason="r",
                                  actor=hook.clinician)
            raise RuntimeError("a later step of the same transaction fails")
        with pytest.raises(Exception):
            patient_change_status(patient=hook.patient, to_status="recovered", effective_date=today, reason="r",
                                  actor=hook.clinician)
    assert deliveries() == []


def test_a_stored_result_announces_screening_completed_with_the_result(hook):
    with scope(hospital=hook.hospital):
        screening = screening_for(hook.patient, actor=hook.clinician)
        result = screening_services.screening_store_result(screening=screening, prediction=PREDICTION,
                                                           overlay=None)
    [delivery] = deliveries()
    data = body(delivery)["data"]
    assert delivery.event == "screening.completed"
    assert data["patient"] == {"id": hook.patient.pk, "mrn": "HOOK-0001"}
    assert data["screening"]["id"] == screening.pk and data["screening"]["status"] == "done"
    assert data["result"] == {"id": result.pk, "label": "covid", "covid_probability": 0.91, "covid_positive": True,
                              "decision": "covid_suspected", "threshold": 0.5, "model_name": "cxrnet",
                              "model_version": "1.0.0"}
    # A redelivered task finds the result and announces nothing twice.
    with scope(hospital=hook.hospital):
        screening_services.screening_store_result(screening=screening, prediction=PREDICTION, overlay=None)
    assert len(deliveries()) == 1


@pytest.mark.parametrize("status, event", [
    (ScreeningStatus.FAILED, "screening.failed"),
    (ScreeningStatus.REJECTED, "screening.failed"),
    (ScreeningStatus.CANNOT_ASSESS, "screening.completed"),
])
def test_a_screening_without_result_announces_by_its_final_status(hook, status, event):
    with scope(hospital=hook.hospital):
        screening = screening_for(hook.patient, actor=hook.clinician, status="running")
        screening_services.screening_finish(screening=screening, status=status, reason="Not a chest X-ray.")
    [delivery] = deliveries()
    data = body(delivery)["data"]
    assert delivery.event == event
    assert data["screening"] == {"id": screening.pk, "status": status, "reason": "Not a chest X-ray.",
                                 "scan_id": screening.scan_id, "created_at": screening.created_at.isoformat()}
    assert data["result"] is None


def test_giving_up_on_a_screening_announces_screening_failed(hook, settings):
    settings.SCREENING_MAX_ATTEMPTS = 1
    with scope(hospital=hook.hospital):
        screening = screening_for(hook.patient, actor=hook.clinician)
        with scopes_disabled():
            type(screening).objects.filter(pk=screening.pk).update(attempts=1)
        assert screening_services.screening_claim(screening_id=screening.pk, task_id="t-1") is None
    [delivery] = deliveries()
    assert delivery.event == "screening.failed" and body(delivery)["data"]["screening"]["status"] == "failed"


def test_a_review_announces_review_recorded(hook):
    with scope(hospital=hook.hospital):
        screening = screening_for(hook.patient, actor=hook.clinician)
        result = airesult_for(screening, covid=0.2)
        review = screening_services.review_create(result=result, decision="override", clinical_label="covid",
                                                  radiological_signs=True, reason="Secretreason",
                                                  actor=hook.clinician)
    [delivery] = deliveries("review.recorded")
    data = body(delivery)["data"]
    assert data["patient"] == {"id": hook.patient.pk, "mrn": "HOOK-0001"}
    assert data["screening"] == {"id": screening.pk}
    assert data["review"] == {"id": review.pk, "decision": "override", "clinical_label": "covid",
                              "radiological_signs": True, "reviewed_at": review.reviewed_at.isoformat()}
    assert data["result"]["id"] == result.pk and data["result"]["label"] == result.label
    assert_no_phi(delivery, hook)


def test_each_subscribed_endpoint_gets_its_own_delivery_of_one_event(hook):
    from webhooks.services import endpoint_create

    with scope(hospital=hook.hospital):
        endpoint_create(hospital=hook.hospital, url="https://second.example/h", events=["patient.status_changed"],
                        actor=hook.admin)
        endpoint_create(hospital=hook.hospital, url="https://third.example/h", events=["review.recorded"],
                        actor=hook.admin)
        patient_change_status(patient=hook.patient, to_status="carrier", effective_date=datetime.date.today(),
                              reason="r", actor=hook.clinician)
    rows = deliveries()
    assert len(rows) == 2 and len({r.event_id for r in rows}) == 1 and len({r.endpoint_id for r in rows}) == 2
