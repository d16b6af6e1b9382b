"""Screenings (scan upload by multipart, list, detail, status to poll), read-only AI
results and clinician reviews over the API. Reads are audited; writes go through
screening.services."""

from django.db.models import Prefetch
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from hospitals.api.base import AuditedListMixin, AuditedRetrieveMixin, HospitalGenericViewSet
from hospitals.api.throttling import HospitalUploadThrottle
from patients.api.serializers import StatusChangeSerializer
from screening import selectors, services
from screening.models import AiResult, Review, Screening
from screening.selectors import PREFETCHED_RESULTS, PREFETCHED_REVIEWS

from . import filters
from .serializers import (
    AiResultSerializer,
    ApplySuggestionSerializer,
    ReviewSerializer,
    ScanUploadSerializer,
    ScreeningSerializer,
    ScreeningStatusSerializer,
)


@extend_schema_view(
    list=extend_schema(summary="List screenings", description="Filter by patient, status, AI label, dates and "
                       "`updated_since` for sync."),
    retrieve=extend_schema(summary="Read a screening", description="With its scan's metadata and the AI result."),
    create=extend_schema(
        summary="Upload a chest X-ray",
        description="multipart/form-data with `patient` and `file` (PNG, JPEG or DICOM). The file is validated "
                    "(fully decoded) before it is stored; a bad file is refused with a reason in `errors.file`. "
                    "Answers 201 with the queued screening; poll its `status` (or subscribe to webhooks). "
                    "Scope `screening:upload`; uploads are also rate-limited per hospital.",
        request={"multipart/form-data": ScanUploadSerializer},
        responses={201: ScreeningSerializer},
    ),
)
class ScreeningViewSet(AuditedListMixin, AuditedRetrieveMixin, HospitalGenericViewSet):
    serializer_class = ScreeningSerializer
    queryset = Screening.objects.none()
    filterset_class = filters.ScreeningFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    audit_object_type = "screening"
    action_policies = {"list": "screening.view", "retrieve": "screening.view", "status": "screening.view",
                       "create": "scan.upload", "apply_suggestion": "patient.change_status"}

    def refine_queryset(self, queryset):
        if getattr(self, "action", None) == "status":  # polled: the newest result's id is all it reads besides the row
            return queryset.prefetch_related(Prefetch(
                "results", queryset=AiResult.objects.only("id", "screening_id", "created_at"),
                to_attr=PREFETCHED_RESULTS))
        return queryset.select_related("scan")

    def load_related(self, screenings):
        selectors.prefetch_results(screenings)
        selectors.prefetch_reviews(screenings)

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(HospitalUploadThrottle())
        return throttles

    def create(self, request, *args, **kwargs):
        serializer = ScanUploadSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        upload, patient = serializer.validated_data["file"], serializer.validated_data["patient"]
        patient.hospital = request.hospital  # found in this hospital's scope: no second read of it
        screening = services.scan_upload(patient=patient, data=upload.read(), uploaded=upload,
                                         filename=upload.name or "", actor=request.user, request=request)
        # Just created: no result or review yet.
        setattr(screening, PREFETCHED_RESULTS, [])
        setattr(screening, PREFETCHED_REVIEWS, [])
        location = reverse("api:screening-status", kwargs={"hospital_slug": request.hospital.slug,
                                                           "pk": screening.pk})
        return Response(ScreeningSerializer(screening).data, status=status.HTTP_201_CREATED,
                        headers={"Location": location})

    @extend_schema(summary="A screening's status", responses=ScreeningStatusSerializer, filters=False,
                   description="A small answer to poll until `is_final` is true.")
    @action(detail=True, methods=["get"], filter_backends=[])
    def status(self, request, *args, **kwargs):
        screening = self.get_object()
        self.audit_objects([screening], "view")
        return Response(ScreeningStatusSerializer(screening).data)

    @extend_schema(summary="Apply the status the reviewed screening suggests", request=ApplySuggestionSerializer,
                   responses={201: StatusChangeSerializer}, filters=False,
                   description="A positive latest lab test with a reviewed film suggests infected (radiological "
                               "signs) or carrier; a clinician decides. 400 when nothing is suggested. Scope `write`.")
    @action(detail=True, methods=["post"], url_path="apply-suggestion", filter_backends=[])
    def apply_suggestion(self, request, *args, **kwargs):
        screening = self.get_object()
        serializer = ApplySuggestionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = services.screening_apply_suggestion(screening=screening, actor=request.user, request=request,
                                                     **serializer.validated_data)
        return Response(StatusChangeSerializer(change).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List AI results", description="Read-only. A screening aid, not a diagnosis."),
    retrieve=extend_schema(summary="Read an AI result", description="Read-only. A screening aid, not a diagnosis."),
)
class AiResultViewSet(AuditedListMixin, AuditedRetrieveMixin, HospitalGenericViewSet):
    serializer_class = AiResultSerializer
    queryset = AiResult.objects.none()
    filterset_class = filters.AiResultFilter
    ordering_fields = ["id", "created_at", "covid_probability"]
    ordering = ["-id"]
    audit_object_type = "airesult"
    action_policies = {"list": "screening.view", "retrieve": "screening.view"}

@extend_schema_view(
    list=extend_schema(summary="List reviews"),
    retrieve=extend_schema(summary="Read a review"),
    create=extend_schema(summary="Review an AI result",
                         description="Confirm keeps the AI label; override needs a different one. A reason is "
                                     "required. Scope `write`."),
)
class ReviewViewSet(AuditedListMixin, AuditedRetrieveMixin, mixins.CreateModelMixin, HospitalGenericViewSet):
    serializer_class = ReviewSerializer
    queryset = Review.objects.none()
    filterset_class = filters.ReviewFilter
    ordering_fields = ["id", "reviewed_at"]
    ordering = ["-id"]
    audit_object_type = "review"
    action_policies = {"list": "screening.view", "retrieve": "screening.view", "create": "screening.review"}

    def refine_queryset(self, queryset):
        return queryset.select_related("reviewer")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = services.review_create(actor=request.user, request=request, **serializer.validated_data)
        return Response(self.get_serializer(review).data, status=status.HTTP_201_CREATED)
