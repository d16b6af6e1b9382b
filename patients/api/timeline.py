"""A patient's history as one timeline: status changes, lab tests, screenings, AI results
and reviews, newest first. Each entry names its kind and carries exactly one record."""

from rest_framework import serializers

from patients.selectors import TIMELINE_KINDS as KINDS
from screening.api.serializers import AiResultSerializer, ReviewSerializer, ScreeningStatusSerializer

from .serializers import LabTestSerializer, StatusChangeSerializer


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
        data = {"kind": kind, "at": self.fields["at"].to_representation(at)}
        data.update({k: None for k in KINDS})
        data[kind] = self.fields[kind].to_representation(obj)
        return data

