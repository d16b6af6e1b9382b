"""Writes about patients. Each is atomic and leaves an audit entry; the caller has
already checked the role (hospitals.permissions) and opened the hospital scope."""

import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from hospitals.audit import audit_record
from hospitals.models import Hospital, User
from webhooks import payloads as webhook_payloads
from webhooks.services import event_emit

from .models import TRANSITIONS, LabTest, Patient, Status, StatusChange, StatusSource

PATIENT_FIELDS = ("mrn", "given_name", "family_name", "sex", "birth_date", "phone", "email", "address", "national_id")


def _check_birth_date(birth_date: datetime.date) -> None:
    if birth_date > timezone.localdate():
        raise ValidationError({"birth_date": "The birth date cannot be in the future."})


def patient_create(*, hospital: Hospital, actor: User, request=None, **fields) -> Patient:
    """Register a patient as suspected. The MRN must be new in this hospital."""
    unknown = set(fields) - set(PATIENT_FIELDS)
    if unknown:
        raise TypeError(f"Unknown patient fields: {sorted(unknown)}")
    _check_birth_date(fields["birth_date"])
    fields["mrn"] = fields["mrn"].strip()
    if Patient.objects.filter(hospital=hospital, mrn=fields["mrn"]).exists():
        raise ValidationError({"mrn": "A patient with this MRN already exists in this hospital."})
    try:
        with transaction.atomic():
            patient = Patient.objects.create(
                hospital=hospital, created_by=actor, status=Status.SUSPECTED,
                status_since=timezone.localdate(), **fields,
            )
            StatusChange.objects.create(
                hospital=hospital, patient=patient, from_status="", to_status=Status.SUSPECTED,
                effective_date=patient.status_since, reason="Registered", source=StatusSource.CLINICIAN,
                changed_by=actor,
            )
            audit_record(action="create", object_type="patient", object_id=patient.pk, hospital=hospital,
                         actor=actor, request=request)
    except IntegrityError as exc:  # a concurrent registration of the same MRN
        raise ValidationError({"mrn": "A patient with this MRN already exists in this hospital."}) from exc
    return patient


def patient_update(*, patient: Patient, actor: User, request=None, **fields) -> Patient:
    """Change demographic fields. Status is never changed here (see patient_change_status)."""
    unknown = set(fields) - set(PATIENT_FIELDS)
    if unknown:
        raise TypeError(f"Unknown patient fields: {sorted(unknown)}")
    if "birth_date" in fields:
        _check_birth_date(fields["birth_date"])
    if "mrn" in fields:
        fields["mrn"] = fields["mrn"].strip()
        clash = Patient.objects.filter(hospital_id=patient.hospital_id, mrn=fields["mrn"]).exclude(pk=patient.pk)
        if clash.exists():
            raise ValidationError({"mrn": "A patient with this MRN already exists in this hospital."})
    changed = sorted(name for name, value in fields.items() if getattr(patient, name) != value)
    if not changed:
        return patient
    with transaction.atomic():
        for name in changed:
            setattr(patient, name, fields[name])
        patient.save()
        audit_record(action="update", object_type="patient", object_id=patient.pk, hospital=patient.hospital,
                     actor=actor, request=request, detail={"fields": changed})
    return patient


def patient_change_status(
    *,
    patient: Patient,
    to_status: str,
    effective_date: datetime.date,
    reason: str,
    actor: User,
    source: str = StatusSource.CLINICIAN,
    lab_test: LabTest | None = None,
    request=None,
) -> StatusChange:
    """Move the patient along the state machine, or refuse with a clear message.

    The patient row is locked, so two clinicians acting at once cannot both move it
    from the same state."""
    if to_status not in Status.values:
        raise ValidationError({"to_status": f"Unknown status '{to_status}'."})
    if source not in StatusSource.values:
        raise ValidationError({"source": f"Unknown source '{source}'."})
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Give a reason for the status change."})
    if effective_date > timezone.localdate():
        raise ValidationError({"effective_date": "The effective date cannot be in the future."})
    if lab_test is not None and lab_test.patient_id != patient.pk:
        raise ValidationError({"lab_test": "That lab test belongs to another patient."})
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        current = locked.status
        if to_status == current:
            raise ValidationError({"to_status": f"The patient is already {Status(current).label.lower()}."})
        if to_status not in TRANSITIONS[current]:
            allowed = ", ".join(Status(s).label.lower() for s in locked.allowed_transitions()) or "none"
            raise ValidationError({"to_status": (
                f"A {Status(current).label.lower()} patient cannot become {Status(to_status).label.lower()}. "
                f"Allowed: {allowed}."
            )})
        if locked.status_since and effective_date < locked.status_since:
            raise ValidationError({"effective_date": (
                f"The effective date cannot be before the current status began ({locked.status_since:%Y-%m-%d})."
            )})
        change = StatusChange.objects.create(
            hospital_id=locked.hospital_id, patient=locked, from_status=current, to_status=to_status,
            effective_date=effective_date, reason=reason.strip(), source=source, lab_test=lab_test, changed_by=actor,
        )
        locked.status, locked.status_since = to_status, effective_date
        locked.save(update_fields=["status", "status_since", "updated_at"])
        audit_record(action="update", object_type="patient", object_id=locked.pk, hospital=locked.hospital,
                     actor=actor, request=request,
                     detail={"status": [current, to_status], "source": source, "status_change": change.pk})
        event_emit(hospital=locked.hospital, event="patient.status_changed",
                   payload=webhook_payloads.status_change_data(change))
    patient.status, patient.status_since = locked.status, locked.status_since
    return change


def labtest_create(*, patient: Patient, test_type: str, result: str, sample_date: datetime.date, actor: User,
                   notes: str = "", request=None) -> LabTest:
    """Record a lab test. A result never changes the status by itself: the patient page
    suggests the matching change and a clinician decides."""
    if sample_date > timezone.localdate():
        raise ValidationError({"sample_date": "The sample date cannot be in the future."})
    with transaction.atomic():
        test = LabTest.objects.create(
            hospital_id=patient.hospital_id, patient=patient, test_type=test_type, result=result,
            sample_date=sample_date, notes=notes, recorded_by=actor,
        )
        audit_record(action="create", object_type="labtest", object_id=test.pk, hospital=patient.hospital,
                     actor=actor, request=request, detail={"patient": patient.pk})
    return test
