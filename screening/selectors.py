"""Reads about scans and screenings. Run inside a hospital scope."""

from dataclasses import dataclass

from django.db.models import QuerySet

from hospitals.managers import ScopedPrefetch, ScopedPreparedSelect
from hospitals.models import Hospital
from patients.models import TRANSITIONS, LabResult, LabTest, Patient, Status

from .models import AWAITING_REVIEW, AiResult, Review, Scan, Screening

# A page of screenings' AI results and reviews, newest first, in the lists that the API, the
# FHIR facade and the portal's worklists show them from.
PREFETCHED_RESULTS = "prefetched_results"
PREFETCHED_REVIEWS = "prefetched_reviews"
prefetch_results = ScopedPrefetch(AiResult, "screening", ("-created_at", "-id"), PREFETCHED_RESULTS)
prefetch_reviews = ScopedPrefetch(Review, "screening", ("-reviewed_at", "-id"), PREFETCHED_REVIEWS)


# A patient's screenings (with their scans and uploaders, or without), AI results and reviews,
# for the patient's timeline: compiled once per connection (hospitals.managers).
_PATIENT_SCREENINGS = {
    False: ScopedPreparedSelect(lambda patient_id: Screening.objects.filter(patient_id=patient_id)),
    True: ScopedPreparedSelect(lambda patient_id: Screening.objects.filter(patient_id=patient_id)
                               .select_related("scan", "scan__uploaded_by")),
}
_PATIENT_RESULTS = ScopedPreparedSelect(lambda patient_id: AiResult.objects.filter(patient_id=patient_id))
_PATIENT_REVIEWS = ScopedPreparedSelect(
    lambda patient_id: Review.objects.filter(patient_id=patient_id).select_related("reviewer"))


def patient_screenings(*, patient: Patient, with_scans: bool) -> tuple[list, list, list]:
    """The patient's screenings, their AI results and their reviews, in three queries, each
    newest first. Each screening holds its results and reviews as `prefetched_results` and
    `prefetched_reviews` (as the API's lists prefetch them); every row holds the patient."""
    screenings = _PATIENT_SCREENINGS[with_scans].all(patient.pk)
    by_id = {}
    for screening in screenings:
        screening.patient, screening.prefetched_results, screening.prefetched_reviews = patient, [], []
        by_id[screening.pk] = screening
    results = [r for r in _PATIENT_RESULTS.all(patient.pk) if r.screening_id in by_id]
    for result in results:
        result.patient, result.screening = patient, by_id[result.screening_id]
        result.screening.prefetched_results.append(result)
    reviews = [r for r in _PATIENT_REVIEWS.all(patient.pk) if r.screening_id in by_id]
    for review in reviews:
        review.patient, review.screening = patient, by_id[review.screening_id]
        review.screening.prefetched_reviews.append(review)
    return screenings, results, reviews


def screening_get(*, hospital: Hospital, pk: int) -> Screening:
    """One screening of this hospital; another hospital's id raises DoesNotExist (404)."""
    return Screening.objects.select_related("scan", "patient", "scan__uploaded_by").get(hospital=hospital, pk=pk)


def scan_get(*, hospital: Hospital, pk: int) -> Scan:
    return Scan.objects.select_related("patient").get(hospital=hospital, pk=pk)


def result_get(*, hospital: Hospital, pk: int) -> AiResult:
    return AiResult.objects.select_related("screening").get(hospital=hospital, pk=pk)


def screening_result(*, screening: Screening) -> AiResult | None:
    """The newest model's result for the screening, if any."""
    return screening.results.order_by("-created_at").first()


def screening_latest_review(*, screening: Screening) -> Review | None:
    return screening.reviews.select_related("reviewer").order_by("-reviewed_at", "-id").first()


@dataclass(frozen=True)
class StatusSuggestion:
    """A status change a reviewed screening proposes. A clinician decides."""

    to_status: str
    explanation: str
    review: Review
    lab_test: LabTest


def status_suggestion(*, screening: Screening) -> StatusSuggestion | None:
    """Combine the latest review of this screening with the patient's latest lab test:
    a positive test with radiological signs suggests infected, a positive test without
    them suggests carrier. Nothing is suggested without a review, without a positive
    latest test, or when the state machine does not allow the move."""
    review = screening_latest_review(screening=screening)
    if review is None:
        return None
    patient = screening.patient
    lab = LabTest.objects.filter(patient=patient).order_by("-sample_date", "-id").first()
    if lab is None or lab.result != LabResult.POSITIVE:
        return None
    target = Status.INFECTED if review.radiological_signs else Status.CARRIER
    if target not in TRANSITIONS[patient.status]:
        return None
    signs = "with" if review.radiological_signs else "without"
    explanation = (
        f"Positive {lab.get_test_type_display()} ({lab.sample_date:%Y-%m-%d}) {signs} radiological signs "
        f"on the reviewed film of screening #{screening.pk}."
    )
    return StatusSuggestion(to_status=target, explanation=explanation, review=review, lab_test=lab)


def screening_worklist(*, hospital: Hospital, status: str = "", unreviewed: bool = False) -> QuerySet[Screening]:
    """The hospital's screenings, newest first, for the worklist page. `unreviewed` keeps
    the finished ones (done) that nobody has reviewed yet: a radiologist's reading queue.
    A page's results and reviews are read with `prefetch_results` and `prefetch_reviews`."""
    from .models import ScreeningStatus

    qs = Screening.objects.filter(hospital=hospital)
    if unreviewed:
        qs = qs.filter(AWAITING_REVIEW)
    elif status in ScreeningStatus.values:
        qs = qs.filter(status=status)
    return qs.select_related("patient", "scan").order_by("-created_at", "-id")


def review_queue(*, hospital: Hospital) -> QuerySet[Screening]:
    """The radiologists' reading queue: finished screenings (done) nobody has reviewed yet,
    the highest COVID-19 probability first, then the longest waiting (oldest upload).
    `review_priority` (see the model) holds the key, in the order of an index. A page's
    results are read with `prefetch_results`."""
    return (Screening.objects.filter(AWAITING_REVIEW, hospital=hospital).select_related("patient", "scan")
            .order_by("-review_priority", "created_at", "id"))
