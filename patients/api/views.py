"""Patients, status changes and lab tests over the API (NetBox-style declarative
viewsets). Reads are audited; writes go through patients.services."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from hospitals.api.base import AuditedListMixin, AuditedRetrieveMixin, HospitalGenericViewSet
from patients import selectors, services
from patients.models import LabTest, Patient, StatusChange

from . import filters
from .serializers import LabTestSerializer, PatientSerializer, StatusChangeSerializer
from .timeline import TimelineEntrySerializer


@extend_schema_view(
    list=extend_schema(summary="List patients", description="Filter by status, MRN and `updated_since` for sync."),
    retrieve=extend_schema(summary="Read a patient"),
    create=extend_schema(summary="Register a patient", description="Registered as suspected; the MRN must be new "
                         "in this hospital. Scope `write`."),
    update=extend_schema(summary="Replace a patient's demographics", description="Scope `write`."),
    partial_update=extend_schema(summary="Change some of a patient's demographics", description="Scope `write`."),
)
class PatientViewSet(AuditedListMixin, AuditedRetrieveMixin, HospitalGenericViewSet):
    serializer_class = PatientSerializer
    queryset = Patient.objects.none()
    filterset_class = filters.PatientFilter
    ordering_fields = ["id", "created_at", "updated_at"]
    ordering = ["-id"]
    action_policies = {"list": "patient.view", "retrieve": "patient.view", "history": "patient.view",
                       "create": "patient.create", "update": "patient.edit", "partial_update": "patient.edit"}

    def audit_objects(self, objects, action):
        if objects:
            selectors.patient_audit_read(request=self.request, patients=objects, action=action)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        patient = services.patient_create(hospital=request.hospital, actor=request.user, request=request,
                                          **serializer.validated_data)
        return Response(self.get_serializer(patient).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, partial=False, **kwargs):
        patient = self.get_object()
        serializer = self.get_serializer(patient, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        patient = services.patient_update(patient=patient, actor=request.user, request=request,
                                          **serializer.validated_data)
        return Response(self.get_serializer(patient).data)

    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(summary="A patient's history", responses=TimelineEntrySerializer(many=True),
                   description="Status changes, lab tests, screenings, AI results and reviews of the patient as "
                               "one timeline, newest first. AI results are a screening aid, not a diagnosis.",
                   filters=False)
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def history(self, request, *args, **kwargs):
        patient = self.get_object()
        selectors.patient_audit_read(request=request, patients=[patient], action="view")
        timeline = selectors.patient_timeline(patient=patient, with_related=False)
        return Response(TimelineEntrySerializer(timeline, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="List status changes"),
    retrieve=extend_schema(summary="Read a status change"),
    create=extend_schema(summary="Change a patient's status",
                         description="Moves the patient along the status machine (source: clinician). "
                                     "`lab_test` must be a lab test of the same patient. Scope `write`."),
)
class StatusChangeViewSet(AuditedListMixin, AuditedRetrieveMixin, mixins.CreateModelMixin, HospitalGenericViewSet):
    serializer_class = StatusChangeSerializer
    queryset = StatusChange.objects.none()
    filterset_class = filters.StatusChangeFilter
    ordering_fields = ["id", "changed_at"]
    ordering = ["-id"]
    audit_object_type = "status_change"
    action_policies = {"list": "patient.view", "retrieve": "patient.view", "create": "patient.change_status"}

    def refine_queryset(self, queryset):
        return queryset.select_related("changed_by")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        change = services.patient_change_status(
            patient=data["patient"], to_status=data["to_status"], effective_date=data["effective_date"],
            reason=data["reason"], lab_test=data.get("lab_test"), actor=request.user, request=request,
        )
        return Response(self.get_serializer(change).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List lab tests"),
    retrieve=extend_schema(summary="Read a lab test"),
    create=extend_schema(summary="Record a lab test",
                         description="A result never changes the status by itself. Scope `write`."),
)
class LabTestViewSet(AuditedListMixin, AuditedRetrieveMixin, mixins.CreateModelMixin, HospitalGenericViewSet):
    serializer_class = LabTestSerializer
    queryset = LabTest.objects.none()
    filterset_class = filters.LabTestFilter
    ordering_fields = ["id", "sample_date", "recorded_at"]
    ordering = ["-id"]
    audit_object_type = "labtest"
    action_policies = {"list": "patient.view", "retrieve": "patient.view", "create": "labtest.create"}

    def refine_queryset(self, queryset):
        return queryset.select_related("recorded_by")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        test = services.labtest_create(actor=request.user, request=request, **serializer.validated_data)
        return Response(self.get_serializer(test).data, status=status.HTTP_201_CREATED)
