"""A patient's history as one timeline: status changes, lab tests, screenings, AI results
and reviews, newest first. Each entry names its kind and carries exactly one record."""

from rest_framework import serializers

from patients.models import Patient
from screening.api.serializers import AiResultSerializer, ReviewSerializer, ScreeningStatusSerializer

from .serializers import LabTestSerializer, StatusChangeSerializer

KINDS = ["status_change", "lab_test", "screening", "ai_result", "review"]


class TimelineEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS)
    at = serializers.DateTimeField()
    status_change = StatusChangeSerializer(required=False, allow_null=True)
    lab_test = LabTestSerializer(required=False, allow_null=True)
    screening = ScreeningStatusSerializer(required=False, allow_null=True)
    ai_result = AiResultSerializer(required=False, allow_null=True)
    review = ReviewSerializer(required=False, allow_null=True)

    def to_representation(self, entry):
        kind, at, obj = entry
        data = {"kind": kind, "at": serializers.DateTimeField().to_representation(at)}
        data.update({k: None for k in KINDS})
        data[kind] = self.fields[kind].to_representation(obj)
        return data


def patient_timeline(*, patient: Patient) -> list[tuple[str, object, object]]:
    """(kind, when, record) of everything recorded about the patient, newest first."""
    from screening.models import Review, Screening

    entries = [("status_change", c.changed_at, c) for c in patient.status_changes.select_related("changed_by")]
    entries += [("lab_test", t.recorded_at, t) for t in patient.lab_tests.select_related("recorded_by")]
    screenings = list(Screening.objects.filter(patient=patient).prefetch_related("results"))
    entries += [("screening", s.created_at, s) for s in screenings]
    # A patient's AI results are those of the patient's screenings: already fetched.
    entries += [("ai_result", r.created_at, r) for s in screenings for r in s.results.all()]
    entries += [("review", r.reviewed_at, r) for r in Review.objects.filter(patient=patient).select_related("reviewer")]
    entries.sort(key=lambda e: (e[1], KINDS.index(e[0])), reverse=True)
    return entries
