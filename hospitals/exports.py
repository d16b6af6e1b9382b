"""CSV exports of one hospital's data, streamed row by row (a large hospital's export never
sits in memory). The queries are built in the view, inside the hospital's scope; the
response body is produced after the middleware has closed that scope, so the stream
reopens it for the hospital it was built for."""

import csv
import datetime
from collections.abc import Callable, Iterable

from django.db.models import OuterRef, QuerySet, Subquery
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


def patient_rows(*, hospital: Hospital) -> tuple[list[str], QuerySet]:
    """Every patient of the hospital with their demographics and current status, by id."""
    rows = Patient.objects.filter(hospital=hospital).order_by("id").values_list(*PATIENT_COLUMNS)
    return PATIENT_COLUMNS, rows


SCREENING_COLUMNS = [
    "id", "patient_id", "patient_mrn", "uploaded_at", "original_filename", "format", "status", "reason",
    "finished_at", "ai_label", "covid_probability", "ai_decision", "model_version", "result_at",
    "review_decision", "clinical_label", "radiological_signs", "reviewer", "reviewed_at",
]


def screening_rows(*, hospital: Hospital) -> tuple[list[str], QuerySet]:
    """Every screening of the hospital with its newest AI result and latest review, by id.
    One query: the result and review columns are correlated subqueries."""
    result = AiResult.objects.filter(screening=OuterRef("pk")).order_by("-created_at", "-id")
    review = Review.objects.filter(screening=OuterRef("pk")).order_by("-reviewed_at", "-id")
    annotations = {
        "ai_label": Subquery(result.values("label")[:1]),
        "covid_probability": Subquery(result.values("covid_probability")[:1]),
        "ai_decision": Subquery(result.values("decision")[:1]),
        "model_version": Subquery(result.values("model_version")[:1]),
        "result_at": Subquery(result.values("created_at")[:1]),
        "review_decision": Subquery(review.values("decision")[:1]),
        "clinical_label": Subquery(review.values("clinical_label")[:1]),
        "radiological_signs": Subquery(review.values("radiological_signs")[:1]),
        "reviewer": Subquery(review.values("reviewer__email")[:1]),
        "reviewed_at": Subquery(review.values("reviewed_at")[:1]),
    }
    rows = (Screening.objects.filter(hospital=hospital).order_by("id").annotate(**annotations)
            .values_list("id", "patient_id", "patient__mrn", "created_at", "scan__original_filename", "scan__format",
                         "status", "reason", "finished_at", *annotations))
    return SCREENING_COLUMNS, rows
