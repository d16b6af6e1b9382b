"""Patient services: per-hospital MRN uniqueness, date checks, fields they refuse, and
child rows always in the patient's hospital."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent
from patients import services
from patients.models import LabTest, Patient, StatusChange

from ..factories import UserFactory

BIRTH = datetime.date(1985, 6, 1)
TOMORROW = datetime.date.today() + datetime.timedelta(days=1)


def register(hospital, mrn="M-1", **extra):
    fields = {"mrn": mrn, "given_name": "Grace", "family_name": "Hopper", "sex": "female", "birth_date": BIRTH}
    fields.update(extra)
    with scope(hospital=hospital):
        return services.patient_create(hospital=hospital, actor=UserFactory(), **fields)


def test_create_registers_a_suspected_patient_with_a_first_timeline_row(hospital_a):
    patient = register(hospital_a, mrn="  M-7 ")
    with scope(hospital=hospital_a):
        assert patient.mrn == "M-7"
        assert (patient.status, patient.status_since) == ("suspected", datetime.date.today())
        row = StatusChange.objects.get(patient=patient)
        assert (row.from_status, row.to_status, row.hospital_id) == ("", "suspected", hospital_a.pk)


def test_mrn_is_unique_per_hospital_only(hospital_a, hospital_b):
    register(hospital_a, mrn="M-1")
    with pytest.raises(ValidationError) as excinfo:
        register(hospital_a, mrn=" M-1")
    assert "already exists in this hospital" in excinfo.value.message_dict["mrn"][0]
    other = register(hospital_b, mrn="M-1")  # another hospital may use the same number
    assert other.hospital == hospital_b
    with scopes_disabled():
        assert Patient.objects.filter(mrn="M-1").count() == 2


def test_future_birth_date_is_refused_and_nothing_is_written(hospital_a):
    with pytest.raises(ValidationError) as excinfo:
        register(hospital_a, birth_date=TOMORROW)
    assert "future" in excinfo.value.message_dict["birth_date"][0]
    with scopes_disabled():
        assert not Patient.objects.exists() and not AuditEvent.objects.filter(hospital=hospital_a).exists()


@pytest.mark.parametrize("field", ["status", "hospital", "created_by"])
def test_services_refuse_fields_they_do_not_own(hospital_a, field):
    patient = register(hospital_a)
    with scope(hospital=hospital_a), pytest.raises(TypeError):
        services.patient_update(patient=patient, actor=UserFactory(), **{field: "deceased"})
    with pytest.raises(TypeError):
        register(hospital_a, mrn="M-2", **{field: "x"})


def test_update_refuses_an_mrn_of_another_patient_of_the_hospital(hospital_a, hospital_b):
    register(hospital_a, mrn="M-1")
    register(hospital_b, mrn="M-2")
    patient = register(hospital_a, mrn="M-3")
    with scope(hospital=hospital_a):
        with pytest.raises(ValidationError):
            services.patient_update(patient=patient, actor=UserFactory(), mrn="M-1")
        services.patient_update(patient=patient, actor=UserFactory(), mrn="M-2")  # B's number is free in A
        assert Patient.objects.get(pk=patient.pk).mrn == "M-2"


def test_labtest_belongs_to_the_patients_hospital_and_refuses_a_future_sample(hospital_a):
    patient = register(hospital_a)
    with scope(hospital=hospital_a):
        test = services.labtest_create(patient=patient, test_type="rt_pcr", result="negative",
                                       sample_date=datetime.date.today(), actor=UserFactory())
        assert test.hospital_id == hospital_a.pk
        with pytest.raises(ValidationError) as excinfo:
            services.labtest_create(patient=patient, test_type="rt_pcr", result="negative", sample_date=TOMORROW,
                                    actor=UserFactory())
        assert "sample_date" in excinfo.value.message_dict
        assert LabTest.objects.count() == 1


def test_a_child_row_in_another_hospital_than_its_patient_is_refused(hospital_a, hospital_b):
    patient = register(hospital_a)
    with scopes_disabled(), pytest.raises(ValueError, match="patient's hospital"):
        LabTest.objects.create(hospital=hospital_b, patient=patient, test_type="rt_pcr", result="positive",
                               sample_date=datetime.date.today(), recorded_by=UserFactory())
