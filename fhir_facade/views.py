"""Read (`GET /fhir/<slug>/<Type>/<id>`) and search-type (`GET /fhir/<slug>/<Type>?...`)
of each resource, and the CapabilityStatement (`GET /fhir/<slug>/metadata`).

Every view is a `HospitalGenericViewSet` / `HospitalAPIView` (hospitals.api.base): the
same OAuth2 credentials and scopes as the REST API (scope `read`; portal sessions by
role), another hospital's slug or id answered exactly like a missing one (404), no-store
caching, and reads of patient data audited like the API's (`patients.selectors.
patient_audit_read` for patients, `audit_read` for the rest). Only the wire format
differs: FHIR JSON, OperationOutcome errors (fhir_facade.errors)."""

import re

from django.db.models import Exists, F, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Greatest
from rest_framework import exceptions
from rest_framework.response import Response

from hospitals.api.base import HospitalAPIView, HospitalGenericViewSet
from patients import selectors as patient_selectors
from patients.models import Patient, StatusChange
from screening import selectors as screening_selectors
from screening.models import AiResult, Review, Scan, ScanFormat, Screening

from . import mapping
from .errors import FhirContentNegotiation, FhirJSONRenderer, SearchError, fhir_exception_handler
from .search import (
    Param,
    apply_search,
    bundle,
    date_param,
    id_param,
    last_updated_param,
    paginate,
    reference_param,
    token_values,
)

INT_ID = re.compile(r"^[1-9][0-9]{0,17}$")
SHA256_ID = re.compile(r"^[0-9a-f]{64}$")


def _token_filter(qs, field: str, value: str, system: str):
    """An identifier search on `field`, whose identifiers all have `system`."""
    values = token_values(value, system)
    return qs if "*" in values else qs.filter(**{f"{field}__in": values})


class FhirMixin:
    """The facade's wire format on top of a hospital-scoped API view."""

    renderer_classes = [FhirJSONRenderer]
    schema = None  # not part of the REST API's OpenAPI document; metadata describes it
    content_negotiation_class = FhirContentNegotiation
    pagination_class = None
    filter_backends: list = []

    def get_exception_handler(self):
        return fhir_exception_handler

    def base_url(self) -> str:
        return self.request.build_absolute_uri(f"/fhir/{self.request.hospital.slug}/")


class FhirResourceViewSet(FhirMixin, HospitalGenericViewSet):
    """`retrieve` is the read interaction and `list` the search-type interaction of one
    resource type. A subclass sets `resource_type`, `policy`, `search_params`,
    `get_queryset` (filtered by `request.hospital`), `to_resource` and how it audits."""

    resource_type: str = ""
    policy: str = ""
    search_params: dict[str, Param] = {}
    id_pattern: re.Pattern = INT_ID
    id_field: str = "id"  # the lookup of a read and the key of keyset paging

    def __init_subclass__(cls, **kwargs):
        if cls.policy:
            cls.action_policies = {"list": cls.policy, "retrieve": cls.policy}
        super().__init_subclass__(**kwargs)

    def to_resource(self, obj) -> dict:
        raise NotImplementedError

    def not_found(self):
        # The same answer for a missing id, a malformed one and another hospital's.
        return exceptions.NotFound(f"Unknown {self.resource_type} id.")

    def get_object(self):
        pk = self.kwargs["pk"]
        if not self.id_pattern.match(pk):
            raise self.not_found()
        obj = next(iter(self.get_queryset().filter(**{self.id_field: pk})[:1]), None)
        if obj is None:
            raise self.not_found()
        return obj

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        self.load_related([obj])
        self.audit_objects([obj], "view")
        return Response(self.to_resource(obj))

    def list(self, request, *args, **kwargs):
        queryset = apply_search(self.get_queryset(), request.query_params, self.search_params, self)
        rows, total, next_url = paginate(request, queryset, key=self.id_field, cursor_pattern=self.id_pattern)
        self.load_related(rows)
        self.audit_objects(rows, "list")
        base = self.base_url()
        resources = [self.to_resource(row) for row in rows]
        entries = [(f"{base}{self.resource_type}/{r['id']}", r) for r in resources]
        return Response(bundle(request, total=total, entries=entries, next_url=next_url))


# --- Organization -----------------------------------------------------------------------------------

class OrganizationViewSet(FhirResourceViewSet):
    """The hospital of the URL, the only Organization a credential can see."""

    resource_type = "Organization"
    policy = "patient.view"
    search_params = {
        "_id": id_param(),
        "identifier": Param("token", f"The hospital's slug ({mapping.HOSPITAL_SLUG_SYSTEM}|<slug>)",
                            lambda qs, value, view: _token_filter(qs, "slug", value, mapping.HOSPITAL_SLUG_SYSTEM)),
    }

    def get_queryset(self):
        from hospitals.models import Hospital

        return Hospital.objects.filter(pk=self.request.hospital.pk)

    def audit_objects(self, objects, action):
        """The hospital's name and slug are no patient data: not audited."""

    def to_resource(self, hospital):
        return mapping.organization(hospital)


# --- Patient --------------------------------------------------------------------------------------------

def _patient_identifier(qs, value, view):
    return _token_filter(qs, "mrn", value, mapping.mrn_system(view.request.hospital))


class PatientViewSet(FhirResourceViewSet):
    resource_type = "Patient"
    policy = "patient.view"
    search_params = {
        "_id": id_param(),
        "identifier": Param("token", "The MRN: <value> or urn:hospital:<slug>:mrn|<value>", _patient_identifier),
        "_lastUpdated": last_updated_param("updated_at"),
    }

    def get_queryset(self):
        return Patient.objects.filter(hospital=self.request.hospital)

    def audit_objects(self, objects, action):
        if objects:
            patient_selectors.patient_audit_read(request=self.request, patients=objects, action=action)

    def to_resource(self, patient):
        return mapping.patient(patient, self.request.hospital)


# --- Observation (AI results) -------------------------------------------------------------------------

class ObservationViewSet(FhirResourceViewSet):
    """AI results, tagged AI-asserted (see fhir_facade.mapping.observation)."""

    resource_type = "Observation"
    policy = "screening.view"
    audit_object_type = "airesult"
    search_params = {
        "_id": id_param(),
        "patient": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "subject": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "date": date_param("created_at", "When the AI result was made (effectiveDateTime); prefixes eq, ne, gt, "
                                         "lt, ge, le"),
        "_lastUpdated": last_updated_param("created_at"),
    }

    def get_queryset(self):
        return AiResult.objects.filter(hospital=self.request.hospital).select_related("screening__scan")

    def to_resource(self, result):
        return mapping.observation(result)


# --- DiagnosticReport -------------------------------------------------------------------------------------

class DiagnosticReportViewSet(FhirResourceViewSet):
    """A screening with an AI result: the AI observations and the clinician's review."""

    resource_type = "DiagnosticReport"
    policy = "screening.view"
    audit_object_type = "screening"
    search_params = {
        "_id": id_param(),
        "patient": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "subject": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "date": date_param("scan__uploaded_at", "When the film was uploaded (effectiveDateTime); prefixes eq, ne, "
                                                "gt, lt, ge, le"),
        "_lastUpdated": last_updated_param("last_updated"),
    }

    def get_queryset(self):
        last_review = Review.objects.filter(screening=OuterRef("pk")).order_by("-reviewed_at").values("reviewed_at")
        last_result = AiResult.objects.filter(screening=OuterRef("pk")).order_by("-created_at").values("created_at")
        return (
            Screening.objects.filter(hospital=self.request.hospital)
            # EXISTS, not `last_result IS NOT NULL`: MariaDB answers it as a semi-join on the results'
            # (screening, ...) index instead of sorting each screening's results (a year's count for
            # the largest hospital: 2x faster with the buffer pool warm, 3-4x with it cold).
            .filter(Exists(AiResult.objects.filter(screening=OuterRef("pk"))))
            .annotate(last_result=Subquery(last_result[:1]), last_review=Subquery(last_review[:1]))
            # Greatest() is NULL on MySQL and SQLite when an argument is: coalesce first.
            .annotate(last_updated=Greatest(Coalesce(F("last_review"), F("last_result")), F("last_result")))
            .select_related("scan")
        )

    def load_related(self, screenings):
        screening_selectors.prefetch_results(screenings)
        screening_selectors.prefetch_reviews(screenings)

    def to_resource(self, screening):
        return mapping.diagnostic_report(screening)


# --- ImagingStudy and Media (the scans) ----------------------------------------------------------------

class ScanViewSet(FhirResourceViewSet):
    policy = "screening.view"
    audit_object_type = "scan"
    search_params = {
        "_id": id_param(),
        "patient": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "subject": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "_lastUpdated": last_updated_param("uploaded_at"),
    }
    dicom: bool

    def get_queryset(self):
        scans = Scan.objects.filter(hospital=self.request.hospital)
        return scans.filter(format=ScanFormat.DICOM) if self.dicom else scans.exclude(format=ScanFormat.DICOM)


class ImagingStudyViewSet(ScanViewSet):
    """DICOM scans."""

    resource_type = "ImagingStudy"
    dicom = True

    def to_resource(self, scan):
        return mapping.imaging_study(scan)


class MediaViewSet(ScanViewSet):
    """PNG and JPEG scans."""

    resource_type = "Media"
    dicom = False

    def to_resource(self, scan):
        return mapping.media(scan)


# --- Device (the models) ----------------------------------------------------------------------------------

def _device_identifier(qs, value, view):
    return _token_filter(qs, "model_sha256", value, mapping.MODEL_SHA256_SYSTEM)


class DeviceViewSet(FhirResourceViewSet):
    """The models that produced AI results in this hospital, one per sha256."""

    resource_type = "Device"
    policy = "screening.view"
    id_pattern = SHA256_ID
    id_field = "model_sha256"
    search_params = {
        "_id": Param("token", "The model's sha256", lambda qs, value, view: qs.filter(
            model_sha256__in=[v.strip() for v in value.split(",")])),
        "identifier": Param("token", f"The model's sha256 ({mapping.MODEL_SHA256_SYSTEM}|<sha256>)",
                            _device_identifier),
    }

    def get_queryset(self):
        """Each model's first result in this hospital, which names it: the smallest id per
        sha256, from the (hospital, model_sha256) index, then those few rows by primary key.
        Grouping every result's row by its model took 40 ms for the benchmark's largest
        hospital, these two steps 5; as one query (the ids a subquery), MariaDB walked all
        the hospital's results to probe the ids."""
        firsts = list(AiResult.objects.filter(hospital=self.request.hospital).order_by().values("model_sha256")
                      .annotate(first=Min("id")).values_list("first", flat=True))
        return (AiResult.objects.filter(hospital=self.request.hospital, pk__in=firsts).order_by()
                .values("model_sha256", "model_name", "model_version", first_used=F("created_at")))

    def audit_objects(self, objects, action):
        """A model's name, version and hash are no patient data: not audited."""

    def to_resource(self, model):
        return mapping.device(model)


# --- Condition (infected / carrier) -----------------------------------------------------------------------

def _clinical_status(qs, value, view):
    wanted = {v.strip() for v in value.split(",")}
    unknown = wanted - {"active", "inactive", "resolved"}
    if unknown:
        raise SearchError(f"clinical-status is one of active, inactive, resolved; got {sorted(unknown)}.")
    q = Q(pk__in=[])
    if "active" in wanted:
        q |= Q(next_to_status__isnull=True)
    if "resolved" in wanted:
        q |= Q(next_to_status="recovered")
    if "inactive" in wanted:
        q |= Q(next_to_status__isnull=False) & ~Q(next_to_status="recovered")
    return qs.filter(q)


class ConditionViewSet(FhirResourceViewSet):
    """Infected and carrier periods from the status history: one Condition per status
    change into infected or carrier, ended by the patient's next change."""

    resource_type = "Condition"
    policy = "patient.view"
    audit_object_type = "status_change"
    search_params = {
        "_id": id_param(),
        "patient": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "subject": reference_param("patient_id", "Patient", "The patient (Patient/<id> or <id>)"),
        "clinical-status": Param("token", "active, inactive or resolved", _clinical_status),
        "_lastUpdated": last_updated_param("last_updated"),
    }

    def get_queryset(self):
        # Ids grow with time, so the next change of the patient is the smallest larger id.
        following = StatusChange.objects.filter(patient_id=OuterRef("patient_id"), pk__gt=OuterRef("pk")).order_by("pk")
        return (
            StatusChange.objects.filter(hospital=self.request.hospital, to_status__in=mapping.CONDITION_STATUSES)
            .annotate(next_to_status=Subquery(following.values("to_status")[:1]),
                      next_effective_date=Subquery(following.values("effective_date")[:1]),
                      next_changed_at=Subquery(following.values("changed_at")[:1]))
            .annotate(last_updated=Coalesce(F("next_changed_at"), F("changed_at")))
        )

    def to_resource(self, change):
        return mapping.condition(change)


# --- CapabilityStatement ----------------------------------------------------------------------------------

RESOURCE_VIEWSETS = [OrganizationViewSet, PatientViewSet, ObservationViewSet, DiagnosticReportViewSet,
                     ImagingStudyViewSet, MediaViewSet, DeviceViewSet, ConditionViewSet]
CAPABILITY_DATE = "2026-11-21"


class MetadataView(FhirMixin, HospitalAPIView):
    """`GET /fhir/<slug>/metadata`: what this facade serves. Behind the same credential
    check as the resources: a hospital's endpoint is not confirmed to strangers."""

    action_policies = {"get": "patient.view"}

    def get(self, request, hospital_slug):
        resources = []
        for viewset in RESOURCE_VIEWSETS:
            params = [{"name": name, "type": param.type, "documentation": param.documentation}
                      for name, param in viewset.search_params.items()]
            params.append({"name": "_count", "type": "number",
                           "documentation": "Page size (default and maximum: see the Bundle's links)"})
            params.append({"name": "_total", "type": "token",
                           "documentation": "none, estimate or accurate (both exact); without it the first page "
                                            "has Bundle.total and the pages of its next links do not"})
            resources.append({
                "type": viewset.resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params,
            })
        return Response({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": CAPABILITY_DATE,
            "kind": "instance",
            "software": {"name": "Hospital records FHIR facade"},
            "implementation": {"description": f"FHIR R4 read/search facade of {request.hospital.name}",
                               "url": self.base_url()},
            "fhirVersion": "4.0.1",
            "format": ["json", "application/fhir+json"],
            "rest": [{
                "mode": "server",
                "documentation": "Read and search-type only. Search is strict: an unknown parameter is a 400. "
                                 "AI results are a screening aid, not a diagnosis.",
                "security": {
                    "service": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "OAuth", "display": "OAuth"}]}],
                    "description": "OAuth2 client credentials (POST /o/token/) of a partner client bound to this "
                                   "hospital, scope `read`; or a portal session of a member.",
                },
                "resource": resources,
            }],
        })


class UnknownView(FhirMixin, HospitalAPIView):
    """Any other path below `/fhir/<slug>/`: a 404 OperationOutcome after the same
    credential and hospital checks as the rest (so it says nothing to strangers)."""

    # Reaching the handler only ever answers 404.
    action_policies = {method: "patient.view" for method in ("get", "post", "put", "patch", "delete")}

    def _not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound("Unknown resource type or operation; see metadata.")

    get = post = put = patch = delete = _not_found
