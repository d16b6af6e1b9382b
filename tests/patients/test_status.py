"""The status state machine: every one of the 6x6 pairs, allowed or refused, through
`patients.services.patient_change_status`, and the date and lab-test rules."""

import datetime
import itertools

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent
from patients import services
from patients.models import TRANSITIONS, Patient, Status, StatusChange

from ..factories import LabTestFactory, PatientFactory, UserFactory

TODAY = datetime.date.today()
PAIRS = list(itertools.product(Status.values, Status.values))


def test_the_table_names_every_status():
    assert set(TRANSITIONS) == set(Status.values)
    assert all(set(targets) <= set(Status.values) for targets in TRANSITIONS.values())
    assert TRANSITIONS[Status.DECEASED] == frozenset()


@pytest.fixture
def clinician(db):
    return UserFactory()


def patient_in(hospital, status, since=TODAY - datetime.timedelta(days=10)):
    with scopes_disabled():
        return PatientFactory(hospital=hospital, status=status, status_since=since)


def counts(hospital):
    with scopes_disabled():
        changes = StatusChange.objects.filter(hospital=hospital).count()
        return changes, AuditEvent.objects.filter(hospital=hospital).count()


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_is_allowed_or_refused_as_the_table_says(hospital_a, clinician, current, target):
    patient = patient_in(hospital_a, current)
    before = counts(hospital_a)
    allowed = target != current and target in TRANSITIONS[current]
    with scope(hospital=hospital_a):
        if allowed:
            change = services.patient_change_status(
                patient=patient, to_status=target, effective_date=TODAY, reason="Clinical review", actor=clinician,
            )
            stored = Patient.objects.get(pk=patient.pk)
            assert (stored.status, stored.status_since) == (target, TODAY)
            assert (change.from_status, change.to_status, change.changed_by) == (current, target, clinician)
            assert counts(hospital_a) == (before[0] + 1, before[1] + 1)
            event = AuditEvent.objects.filter(hospital=hospital_a).order_by("-seq").first()
            assert event.detail["status"] == [current, target]
        else:
            with pytest.raises(ValidationError) as excinfo:
                services.patient_change_status(
                    patient=patient, to_status=target, effective_date=TODAY, reason="Clinical review",
                    actor=clinician,
                )
            message = " ".join(excinfo.value.message_dict["to_status"])
            if target == current:
                assert f"already {Status(current).label.lower()}" in message
            else:
                assert f"cannot become {Status(target).label.lower()}" in message
                assert "Allowed:" in message
            assert Patient.objects.get(pk=patient.pk).status == current
            assert counts(hospital_a) == before  # nothing written, not even an audit row


def test_future_effective_date_is_refused(hospital_a, clinician):
    patient = patient_in(hospital_a, Status.SUSPECTED)
    before = counts(hospital_a)
    with scope(hospital=hospital_a), pytest.raises(ValidationError) as excinfo:
        services.patient_change_status(patient=patient, to_status=Status.INFECTED, reason="x", actor=clinician,
                                       effective_date=TODAY + datetime.timedelta(days=1))
    assert "future" in excinfo.value.message_dict["effective_date"][0]
    assert counts(hospital_a) == before


def test_effective_date_before_the_current_status_began_is_refused(hospital_a, clinician):
    since = TODAY - datetime.timedelta(days=3)
    patient = patient_in(hospital_a, Status.INFECTED, since=since)
    before = counts(hospital_a)
    with scope(hospital=hospital_a):
        with pytest.raises(ValidationError) as excinfo:
            services.patient_change_status(patient=patient, to_status=Status.RECOVERED, reason="x", actor=clinician,
                                           effective_date=since - datetime.timedelta(days=1))
        assert since.isoformat() in excinfo.value.message_dict["effective_date"][0]
        assert counts(hospital_a) == before
        # The day the status began is accepted.
        services.patient_change_status(patient=patient, to_status=Status.RECOVERED, reason="x", actor=clinician,
                                       effective_date=since)


def test_lab_test_of_another_patient_is_refused(hospital_a, clinician):
    patient = patient_in(hospital_a, Status.SUSPECTED)
    with scopes_disabled():
        other = LabTestFactory(patient=PatientFactory(hospital=hospital_a))
    before = counts(hospital_a)
    with scope(hospital=hospital_a), pytest.raises(ValidationError) as excinfo:
        services.patient_change_status(patient=patient, to_status=Status.CARRIER, reason="PCR", actor=clinician,
                                       effective_date=TODAY, source="lab_result", lab_test=other)
    assert "another patient" in excinfo.value.message_dict["lab_test"][0]
    assert counts(hospital_a) == before


def test_own_lab_test_is_linked(hospital_a, clinician):
    patient = patient_in(hospital_a, Status.SUSPECTED)
    with scopes_disabled():
        test = LabTestFactory(patient=patient)
    with scope(hospital=hospital_a):
        change = services.patient_change_status(patient=patient, to_status=Status.CARRIER, reason="PCR",
                                                actor=clinician, effective_date=TODAY, source="lab_result",
                                                lab_test=test)
    assert change.lab_test_id == test.pk and change.source == "lab_result"


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reason_is_required(hospital_a, clinician, reason):
    patient = patient_in(hospital_a, Status.SUSPECTED)
    with scope(hospital=hospital_a), pytest.raises(ValidationError) as excinfo:
        services.patient_change_status(patient=patient, to_status=Status.NEGATIVE, reason=reason, actor=clinician,
                                       effective_date=TODAY)
    assert "reason" in excinfo.value.message_dict


def test_unknown_status_and_source_are_refused(hospital_a, clinician):
    patient = patient_in(hospital_a, Status.SUSPECTED)
    with scope(hospital=hospital_a):
        with pytest.raises(ValidationError) as excinfo:
            services.patient_change_status(patient=patient, to_status="zombie", reason="x", actor=clinician,
                                           effective_date=TODAY)
        assert "to_status" in excinfo.value.message_dict
        with pytest.raises(ValidationError) as excinfo:
            services.patient_change_status(patient=patient, to_status=Status.NEGATIVE, reason="x", actor=clinician,
                                           effective_date=TODAY, source="rumour")
        assert "source" in excinfo.value.message_dict


def test_a_stale_patient_object_cannot_skip_the_state_machine(hospital_a, clinician):
    """The service reads the locked row, not the caller's copy."""
    stale = patient_in(hospital_a, Status.SUSPECTED)
    patient = stale
    with scope(hospital=hospital_a):
        services.patient_change_status(patient=Patient.objects.get(pk=patient.pk), to_status=Status.NEGATIVE,
                                       reason="x", actor=clinician, effective_date=TODAY)
        # `stale` still says suspected; negative -> negative must be refused all the same.
        with pytest.raises(ValidationError):
            services.patient_change_status(patient=stale, to_status=Status.NEGATIVE, reason="x", actor=clinician,
                                           effective_date=TODAY)
