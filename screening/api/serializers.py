"""Input and output shapes of the screening API. AI results are read-only and carry the
disclaimer that they are a screening aid, not a diagnosis."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hospitals.api.fields import HospitalPrimaryKeyRelatedField
from hospitals.api.serializers import FastReadMixin
from ml.inference import DISCLAIMER
from patients.models import Patient
from screening.models import AiLabel, AiResult, Review, ReviewDecision, Scan, Screening
from screening.selectors import PREFETCHED_RESULTS, PREFETCHED_REVIEWS


class ScanSerializer(FastReadMixin, serializers.ModelSerializer):
    class Meta:
        model = Scan
        fields = ["id", "format", "width", "height", "bit_depth", "size_bytes", "sha256", "original_filename",
                  "view_position", "uploaded_at", "duplicate_of"]
        read_only_fields = fields


class AiResultSerializer(FastReadMixin, serializers.ModelSerializer):
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Class -> probability.")
    quality = serializers.DictField(help_text="Input quality checks of the image.")
    has_heatmap = serializers.SerializerMethodField()
    disclaimer = serializers.SerializerMethodField()

    class Meta:
        model = AiResult
        fields = ["id", "screening", "patient", "label", "probabilities", "covid_probability", "covid_positive",
                  "decision", "threshold", "model_name", "model_version", "model_sha256", "preprocessing_version",
                  "quality", "has_heatmap", "created_at", "disclaimer"]
        read_only_fields = fields

    def get_has_heatmap(self, result) -> bool:
        return bool(result.heatmap)

    def get_disclaimer(self, result) -> str:
        return DISCLAIMER


def _related(screening, prefetched: str, relation: str) -> list:
    """The prefetched list, else the relation's rows."""
    rows = getattr(screening, prefetched, None)
    return list(getattr(screening, relation).all()) if rows is None else rows


def newest_results(screening) -> list:
    return sorted(_related(screening, PREFETCHED_RESULTS, "results"), key=lambda r: r.created_at, reverse=True)


@extend_schema_field(AiResultSerializer(allow_null=True))
class LatestResultField(serializers.Field):
    """A screening's newest AI result (from the prefetched results), nested. The nested
    serializer is built once per list, not once per row (building one costs more than
    rendering the row)."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)
        self.result_serializer = AiResultSerializer()

    def to_representation(self, screening):
        results = newest_results(screening)
        return self.result_serializer.to_representation(results[0]) if results else None


@extend_schema_field({"type": "array", "items": {"type": "integer"}})
class ReviewIdsField(serializers.Field):
    """The ids of a screening's reviews, in the order they were prefetched."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, screening):
        return [review.pk for review in _related(screening, PREFETCHED_REVIEWS, "reviews")]


class ScreeningSerializer(FastReadMixin, serializers.ModelSerializer):
    scan = ScanSerializer(read_only=True)
    result = LatestResultField(help_text="The newest AI result, once the screening is done.")
    reviews = ReviewIdsField()
    is_final = serializers.BooleanField(read_only=True)

    class Meta:
        model = Screening
        fields = ["id", "patient", "status", "is_final", "reason", "attempts", "created_at", "enqueued_at",
                  "started_at", "finished_at", "scan", "result", "reviews"]
        read_only_fields = fields


class ScreeningStatusSerializer(FastReadMixin, serializers.ModelSerializer):
    """The small answer to poll while a screening runs."""

    is_final = serializers.BooleanField(read_only=True)
    result = serializers.SerializerMethodField()

    class Meta:
        model = Screening
        fields = ["id", "status", "is_final", "reason", "finished_at", "result"]
        read_only_fields = fields

    def get_result(self, screening) -> int | None:
        results = newest_results(screening)
        return results[0].pk if results else None


class ScanUploadSerializer(serializers.Serializer):
    patient = HospitalPrimaryKeyRelatedField(model=Patient)
    file = serializers.FileField(help_text="PNG (8/16-bit), JPEG or DICOM chest X-ray.")


class ReviewSerializer(FastReadMixin, serializers.ModelSerializer):
    result = HospitalPrimaryKeyRelatedField(model=AiResult, help_text="The AI result this review reads.")
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    clinical_label = serializers.ChoiceField(choices=AiLabel.choices)
    reviewer = serializers.StringRelatedField(read_only=True)

    class Meta:
        model = Review
        fields = ["id", "result", "screening", "patient", "decision", "clinical_label", "radiological_signs",
                  "reason", "reviewer", "reviewed_at"]
        read_only_fields = ["id", "screening", "patient", "reviewer", "reviewed_at"]


class ApplySuggestionSerializer(serializers.Serializer):
    effective_date = serializers.DateField(required=False, help_text="Default: today.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000)
