"""Reads about patients. Run inside a hospital scope; reads of patient data are audited
by the caller with `patient_audit_read`."""

import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from hospitals.audit import audit_record
from hospitals.managers import ScopedPreparedSelect
from hospitals.models import Hospital

from .models import LabResult, LabTest, Patient, Status, StatusChange


def _patient_search(*, hospital: Hospital, query: str, status: str, awaiting_review: bool):
    """The patients the filters keep, and the search's MRN and name conditions (None
    without a search)."""
    from screening.models import AWAITING_REVIEW, Screening

    unreviewed = Screening.objects.filter(AWAITING_REVIEW, patient=OuterRef("pk"))
    qs = Patient.objects.filter(hospital=hospital).annotate(awaiting_review=Exists(unreviewed))
    if status in Status.values:
        qs = qs.filter(status=status)
    if awaiting_review:
        # The patients of the hospital's waiting screenings, from the reading queue's index (it
        # ends with the patient), rather than a probe of each patient's screenings.
        qs = qs.filter(pk__in=Screening.objects.filter(AWAITING_REVIEW, hospital=hospital).values("patient_id"))
    query = query.strip()
    if not query:
        return qs, None, None
    by_mrn = Q(mrn__iexact=query) | Q(mrn__istartswith=query)
    words = query.split()
    by_name = Q()
    for word in words:
        by_name |= Q(given_name__icontains=word) | Q(family_name__icontains=word)
    if len(words) > 1:
        by_name |= Q(given_name__icontains=words[0], family_name__icontains=words[-1])
    return qs, by_mrn, by_name


def patient_list(*, hospital: Hospital, query: str = "", status: str = "",
                 awaiting_review: bool = False) -> QuerySet[Patient]:
    """Patients of the hospital, searched by MRN or name, filtered by status and by having a
    screening that waits for review; each is annotated with `awaiting_review`."""
    qs, by_mrn, by_name = _patient_search(hospital=hospital, query=query, status=status,
                                          awaiting_review=awaiting_review)
    if by_mrn is not None:
        qs = qs.filter(by_mrn | by_name)
    # The order of the (hospital[, status], family name, given name, MRN) indexes, which then
    # give the page's rows in order: ordered by id after the names, MariaDB sorted every
    # patient of the hospital, their `awaiting_review` computed, for a page (9 ms for 5,000).
    return qs.order_by("family_name", "given_name", "mrn", "id")


def patient_list_count(*, hospital: Hospital, query: str = "", status: str = "",
                       awaiting_review: bool = False) -> int:
    """How many patients `patient_list` gives. A search counts the union of the MRN
    matches (a range of the (hospital, MRN) index) and the name matches (a scan of the
    (hospital, family name, given name) index alone) rather than testing every row of
    the hospital for both."""
    qs, by_mrn, by_name = _patient_search(hospital=hospital, query=query, status=status,
                                          awaiting_review=awaiting_review)
    if by_mrn is None:
        return qs.count()
    matches = qs.order_by().values("pk")
    return matches.filter(by_mrn).union(matches.filter(by_name)).count()


def patient_get(*, hospital: Hospital, pk: int) -> Patient:
    """One patient of this hospital; another hospital's id raises Patient.DoesNotExist (404)."""
    return Patient.objects.select_related("hospital").get(hospital=hospital, pk=pk)


TIMELINE_KINDS = ["status_change", "lab_test", "screening", "ai_result", "review"]


# The timeline's own reads, compiled once per connection (hospitals.managers): a status
# change with its author (and the lab test it cites, for the portal), a lab test with its.
_STATUS_CHANGES = {
    False: ScopedPreparedSelect(lambda patient_id: StatusChange.objects.filter(patient_id=patient_id)
                                .select_related("changed_by")),
    True: ScopedPreparedSelect(lambda patient_id: StatusChange.objects.filter(patient_id=patient_id)
                               .select_related("changed_by", "lab_test")),
}
_LAB_TESTS = ScopedPreparedSelect(
    lambda patient_id: LabTest.objects.filter(patient_id=patient_id).select_related("recorded_by"))


def patient_timeline(*, patient: Patient, with_related: bool = True, lab_tests: list | None = None,
                     screening_records: tuple | None = None) -> list[tuple[str, datetime.datetime, object]]:
    """Everything recorded about the patient as one timeline, newest first: (kind, when,
    record) with kind one of TIMELINE_KINDS and `when` the time it was recorded (a status
    change also has its effective date, a lab test its sample date). Five queries.
    `with_related=False` leaves out a change's lab test and a screening's scan and
    uploader, which only the portal page shows (the API names them by id). The portal's page
    lists the patient's lab tests (`patient_lab_tests`) and screenings with their results and
    reviews (`screening_records`, of `screening.selectors.patient_screenings`) beside the
    timeline: given those, it reads only the status changes."""
    from screening.selectors import patient_screenings

    changes = _STATUS_CHANGES[with_related].all(patient.pk)
    for change in changes:
        change.patient = patient
    if lab_tests is None:  # the page's lab tests come with their patient
        lab_tests = _LAB_TESTS.all(patient.pk)
        for test in lab_tests:
            test.patient = patient
    screenings, results, reviews = screening_records or patient_screenings(patient=patient, with_scans=with_related)
    entries = [("status_change", c.changed_at, c) for c in changes]
    entries += [("lab_test", t.recorded_at, t) for t in lab_tests]
    entries += [("screening", s.created_at, s) for s in screenings]
    entries += [("ai_result", r.created_at, r) for r in results]
    entries += [("review", r.reviewed_at, r) for r in reviews]
    entries.sort(key=lambda e: (e[1], TIMELINE_KINDS.index(e[0]), e[2].pk), reverse=True)
    return entries


def patient_lab_tests(*, patient: Patient):
    return patient.lab_tests.select_related("recorded_by").order_by("-sample_date", "-id")


def suggested_status(*, patient: Patient, lab_tests: list) -> str | None:
    """What the latest lab result suggests, if it suggests a move the state machine allows.
    Only a suggestion: a clinician records the change. `lab_tests`: the patient's, as
    `patient_lab_tests` orders them (latest sample first)."""
    latest = lab_tests[0] if lab_tests else None
    if latest is None:
        return None
    if latest.result == LabResult.NEGATIVE and patient.status == Status.SUSPECTED:
        return Status.NEGATIVE
    if latest.result == LabResult.POSITIVE and patient.status in (Status.SUSPECTED, Status.NEGATIVE, Status.RECOVERED):
        return Status.CARRIER
    return None


def patient_audit_read(*, request, patients=(), patient_ids=None, action: str = "view") -> None:
    """Record that the requesting user saw these patients, or the patients of these ids (one
    entry per list page, naming every patient id on it)."""
    ids = [p.pk for p in patients] if patient_ids is None else patient_ids
    if action == "view":
        audit_record(action="view", object_type="patient", object_id=ids[0], hospital=request.hospital,
                     request=request)
    else:
        audit_record(action="list", object_type="patient", hospital=request.hospital, request=request,
                     detail={"patients": ids})


def status_change_recent(*, hospital: Hospital, limit: int = 10) -> list:
    """The hospital's latest status changes (newest recorded first), for the dashboard.

    Their ids first, from the index of the order, then those rows with their patients and
    authors: joined in one query, MariaDB may start from the users' table and sort every
    change of the hospital for the page (it did for two of the benchmark's largest hospitals
    after one sampling of the statistics: 95-190 ms, against under 1 ms)."""
    from .models import StatusChange

    ids = list(StatusChange.objects.filter(hospital=hospital).order_by("-changed_at", "-id")
               .values_list("pk", flat=True)[:limit])
    rows = StatusChange.objects.filter(pk__in=ids).select_related("patient", "changed_by").in_bulk()
    return [rows[pk] for pk in ids if pk in rows]
