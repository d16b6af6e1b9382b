"""Reads about patients. Run inside a hospital scope; reads of patient data are audited
by the caller with `patient_audit_read`."""

import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from hospitals.audit import audit_record
from hospitals.models import Hospital

from .models import LabResult, Patient, Status


def patient_list(*, hospital: Hospital, query: str = "", status: str = "",
                 awaiting_review: bool = False) -> QuerySet[Patient]:
    """Patients of the hospital, searched by MRN or name, filtered by status and by having a
    screening that waits for review; each is annotated with `awaiting_review`."""
    from screening.models import Screening, ScreeningStatus

    unreviewed = Screening.objects.filter(patient=OuterRef("pk"), status=ScreeningStatus.DONE, reviews__isnull=True)
    qs = Patient.objects.filter(hospital=hospital).annotate(awaiting_review=Exists(unreviewed))
    query = query.strip()
    if query:
        terms = Q(mrn__iexact=query) | Q(mrn__istartswith=query)
        for word in query.split():
            terms |= Q(given_name__icontains=word) | Q(family_name__icontains=word)
        if len(query.split()) > 1:
            words = query.split()
            terms |= Q(given_name__icontains=words[0], family_name__icontains=words[-1])
        qs = qs.filter(terms)
    if status in Status.values:
        qs = qs.filter(status=status)
    if awaiting_review:
        qs = qs.filter(awaiting_review=True)
    return qs.order_by("family_name", "given_name", "id")


def patient_get(*, hospital: Hospital, pk: int) -> Patient:
    """One patient of this hospital; another hospital's id raises Patient.DoesNotExist (404)."""
    return Patient.objects.select_related("hospital").get(hospital=hospital, pk=pk)


TIMELINE_KINDS = ["status_change", "lab_test", "screening", "ai_result", "review"]


def patient_timeline(*, patient: Patient) -> list[tuple[str, datetime.datetime, object]]:
    """Everything recorded about the patient as one timeline, newest first: (kind, when,
    record) with kind one of TIMELINE_KINDS and `when` the time it was recorded (a status
    change also has its effective date, a lab test its sample date). Five queries."""
    from screening.models import Review, Screening

    entries = [("status_change", c.changed_at, c)
               for c in patient.status_changes.select_related("changed_by", "lab_test")]
    entries += [("lab_test", t.recorded_at, t) for t in patient.lab_tests.select_related("recorded_by")]
    screenings = list(Screening.objects.filter(patient=patient).select_related("scan", "scan__uploaded_by")
                      .prefetch_related("results"))
    entries += [("screening", s.created_at, s) for s in screenings]
    # A patient's AI results are those of the patient's screenings: fetched with them.
    entries += [("ai_result", r.created_at, r) for s in screenings for r in s.results.all()]
    entries += [("review", r.reviewed_at, r)
                for r in Review.objects.filter(patient=patient).select_related("reviewer", "result")]
    entries.sort(key=lambda e: (e[1], TIMELINE_KINDS.index(e[0]), e[2].pk), reverse=True)
    return entries


def patient_lab_tests(*, patient: Patient):
    return patient.lab_tests.select_related("recorded_by").order_by("-sample_date", "-id")


def suggested_status(*, patient: Patient) -> str | None:
    """What the latest lab result suggests, if it suggests a move the state machine allows.
    Only a suggestion: a clinician records the change."""
    latest = patient.lab_tests.order_by("-sample_date", "-id").first()
    if latest is None:
        return None
    if latest.result == LabResult.NEGATIVE and patient.status == Status.SUSPECTED:
        return Status.NEGATIVE
    if latest.result == LabResult.POSITIVE and patient.status in (Status.SUSPECTED, Status.NEGATIVE, Status.RECOVERED):
        return Status.CARRIER
    return None


def patient_audit_read(*, request, patients, action: str = "view") -> None:
    """Record that the requesting user saw these patients (one entry per list page,
    naming every patient id on it)."""
    ids = [p.pk for p in patients]
    if action == "view":
        audit_record(action="view", object_type="patient", object_id=ids[0], hospital=request.hospital,
                     request=request)
    else:
        audit_record(action="list", object_type="patient", hospital=request.hospital, request=request,
                     detail={"patients": ids})


def status_change_recent(*, hospital: Hospital, limit: int = 10):
    """The hospital's latest status changes (newest recorded first), for the dashboard."""
    from .models import StatusChange

    return (StatusChange.objects.filter(hospital=hospital).select_related("patient", "changed_by")
            .order_by("-changed_at", "-id")[:limit])
