"""CSV exports of one hospital's data, streamed row by row (a large hospital's export never
sits in memory). The queries are built in the view, inside the hospital's scope; the
response body is produced after the middleware has closed that scope, so the stream
reopens it for the hospital it was built for."""

import csv
import datetime
from collections.abc import Callable, Iterable, Iterator

from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.utils import timezone
from django_scopes import scope

from hospitals.models import Hospital
from patients.models import Patient
from screening.models import AiResult, Review, Screening

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


def plain_cell(value) -> str:
    """A value as CSV text: no value is empty, times are ISO 8601 in UTC."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat(timespec="seconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def safe_cell(value) -> str:
    """`plain_cell`, and text that a spreadsheet would run as a formula gets a leading
    apostrophe, so it is shown as the text it is. Only text is touched, not numbers."""
    text = plain_cell(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_response(*, hospital: Hospital, filename: str, header: list[str], rows: Iterable,
                 cell: Callable = safe_cell) -> StreamingHttpResponse:
    """Stream `header` then `rows` (iterated inside the hospital's scope) as a CSV attachment."""

    def stream():
        writer = csv.writer(_Echo())
        yield writer.writerow(header)
        with scope(hospital=hospital):
            for row in rows:
                yield writer.writerow([cell(value) for value in row])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store, private"
    return response


def export_filename(hospital: Hospital, what: str) -> str:
    return f"{what}-{hospital.slug}-{timezone.localdate():%Y%m%d}.csv"


PATIENT_COLUMNS = ["id", "mrn", "given_name", "family_name", "sex", "birth_date", "phone", "email", "address",
                   "national_id", "status", "status_since", "created_at", "updated_at"]
CHUNK = 500


def patient_rows(*, hospital: Hospital) -> tuple[list[str], Iterator]:
    """Every patient of the hospital with their demographics and current status, by id."""
    rows = Patient.objects.filter(hospital=hospital).order_by("id").values_list(*PATIENT_COLUMNS)
    return PATIENT_COLUMNS, rows.iterator(chunk_size=CHUNK)


SCREENING_COLUMNS = [
    "id", "patient_id", "patient_mrn", "uploaded_at", "original_filename", "format", "status", "reason",
    "finished_at", "ai_label", "covid_probability", "ai_decision", "model_version", "result_at",
    "review_decision", "clinical_label", "radiological_signs", "reviewer", "reviewed_at",
]


def screening_rows(*, hospital: Hospital) -> tuple[list[str], Iterator]:
    """Every screening of the hospital with its newest AI result and latest review, by id.
    Three queries per chunk of screenings (the screenings, their results, their reviews)."""
    screenings = (
        Screening.objects.filter(hospital=hospital).order_by("id").select_related("patient", "scan")
        .prefetch_related(Prefetch("results", queryset=AiResult.objects.order_by("-created_at", "-id")),
                          Prefetch("reviews", queryset=Review.objects.select_related("reviewer")
                                   .order_by("-reviewed_at", "-id")))
    )

    def rows():
        for s in screenings.iterator(chunk_size=CHUNK):
            result = next(iter(s.results.all()), None)
            review = next(iter(s.reviews.all()), None)
            yield [
                s.pk, s.patient_id, s.patient.mrn, s.created_at, s.scan.original_filename, s.scan.format, s.status,
                s.reason, s.finished_at,
                *([result.label, result.covid_probability, result.decision, result.model_version, result.created_at]
                  if result else [None] * 5),
                *([review.decision, review.clinical_label, review.radiological_signs, review.reviewer.email,
                   review.reviewed_at] if review else [None] * 5),
            ]

    return SCREENING_COLUMNS, rows()
