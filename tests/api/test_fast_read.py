"""`FastReadMixin` gives exactly what DRF's own `Serializer.to_representation` gives, for
every output serializer of the API, on rows with and without optional values, in UTC and
in another time zone."""

import datetime

import pytest
from django.utils import timezone
from django_scopes import scope
from rest_framework import serializers

from patients.api.serializers import LabTestSerializer, PatientSerializer, StatusChangeSerializer
from patients.models import LabTest, Patient, StatusChange
from screening.api.serializers import (
    AiResultSerializer,
    ReviewSerializer,
    ScanSerializer,
    ScreeningSerializer,
    ScreeningStatusSerializer,
)
from screening.api.views import ScreeningViewSet
from screening.models import AiResult, Review, Scan, Screening
from tests.factories import HospitalFactory, PatientFactory, add_screening, hospital_world, screening_for


def drf_output(serializer_class, obj):
    """DRF's generic output of one row (nested serializers use theirs)."""
    return serializers.Serializer.to_representation(serializer_class(), obj)


@pytest.fixture
def world(db):
    world = hospital_world(HospitalFactory(), tag="Fast")
    add_screening(world, tag="Fast")
    with scope(hospital=world.hospital):
        # Optional values left empty: no phone, no lab test behind a change, a queued
        # screening without a result or a review.
        PatientFactory(hospital=world.hospital, phone="", email="", address="")
        StatusChange.objects.create(hospital=world.hospital, patient=world.patient, from_status="carrier",
                                    to_status="recovered", effective_date=datetime.date.today(), reason="r",
                                    changed_by=world.clinician)
        screening_for(world.patient, actor=world.clinician, seed=3)
    return world


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_fast_output_is_drf_output(world, zone):
    with scope(hospital=world.hospital), timezone.override(zone):
        rows = {
            PatientSerializer: Patient.objects.all(),
            StatusChangeSerializer: StatusChange.objects.select_related("changed_by"),
            LabTestSerializer: LabTest.objects.select_related("recorded_by"),
            ScanSerializer: Scan.objects.all(),
            AiResultSerializer: AiResult.objects.all(),
            # As the API view loads them (results and reviews prefetched into lists).
            ScreeningSerializer: ScreeningViewSet().refine_queryset(Screening.objects.all()),
            ScreeningStatusSerializer: Screening.objects.prefetch_related("results"),
            ReviewSerializer: Review.objects.select_related("reviewer"),
        }
        outputs = {}
        for serializer_class, queryset in rows.items():
            objects = list(queryset)
            fast = [dict(row) for row in serializer_class(objects, many=True).data]
            assert fast == [drf_output(serializer_class, obj) for obj in objects], serializer_class.__name__
            outputs[serializer_class] = fast
        # The nested result is the newest, the reviews are newest first, by id.
        for row in outputs[ScreeningSerializer]:
            screening = Screening.objects.get(pk=row["id"])
            newest = screening.results.order_by("-created_at").first()
            assert row["result"] == (AiResultSerializer(newest).data if newest else None)
            reviews = screening.reviews.order_by("-reviewed_at", "-id")
            assert row["reviews"] == list(reviews.values_list("pk", flat=True))
        # Without the view's prefetch, the same answer from the relations.
        assert [dict(row) for row in ScreeningSerializer(Screening.objects.all(), many=True).data] == \
            outputs[ScreeningSerializer]
    # Rows with and without the optional values were compared.
    assert {row["result"] is None for row in outputs[ScreeningSerializer]} == {True, False}
    assert {row["lab_test"] is None for row in outputs[StatusChangeSerializer]} == {True, False}
    assert {row["phone"] for row in outputs[PatientSerializer]} >= {""}


def test_big_integers_as_text_when_drf_is_told_so(world, settings):
    """The ids are big integers: numbers, unless COERCE_BIGINT_TO_STRING asks for text."""
    with scope(hospital=world.hospital):
        objects = list(Patient.objects.all())
        assert [row["id"] for row in PatientSerializer(objects, many=True).data] == [p.pk for p in objects]
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "COERCE_BIGINT_TO_STRING": True}
        fast = [dict(row) for row in PatientSerializer(objects, many=True).data]
        assert fast == [drf_output(PatientSerializer, obj) for obj in objects]
        assert [row["id"] for row in fast] == [str(p.pk) for p in objects]


def test_validated_data_goes_through_drf(world):
    data = {"mrn": "X-1", "given_name": "Ann", "family_name": "Lee", "sex": "female",
            "birth_date": "1980-01-02"}
    serializer = PatientSerializer(data=data)
    assert serializer.is_valid(), serializer.errors
    assert serializer.data["birth_date"] == "1980-01-02"
    assert serializer.data["mrn"] == "X-1"


def test_schema_components_keep_their_own_descriptions():
    """The mixin adds nothing to the OpenAPI document: a serializer without a docstring
    has no description, one with a docstring keeps it."""
    from drf_spectacular.generators import SchemaGenerator

    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert "description" not in components["Patient"]
    assert "description" not in components["Screening"]
    assert components["ScreeningStatus"]["description"] == "The small answer to poll while a screening runs."


OUTPUT_SERIALIZERS = [PatientSerializer, StatusChangeSerializer, LabTestSerializer, ScanSerializer, AiResultSerializer,
                      ScreeningSerializer, ScreeningStatusSerializer, ReviewSerializer]


def every_field(serializer, prefix=""):
    """(path, field) for each field of a serializer, of its nested serializers and children."""
    for name, field in serializer.fields.items():
        path = f"{prefix}{name}"
        yield path, field
        inner = field.child if isinstance(field, serializers.ListSerializer) else field
        if isinstance(inner, serializers.Serializer):
            yield from every_field(inner, f"{path}.")
        for attr in ("child", "child_relation"):
            if isinstance(getattr(field, attr, None), serializers.Field) and inner is field:
                yield f"{path}.{attr}", getattr(field, attr)


@pytest.mark.parametrize("serializer_class", OUTPUT_SERIALIZERS, ids=lambda c: c.__name__)
def test_each_serializer_reads_through_fields_of_its_own(serializer_class):
    """Output serializers share the class's prototype fields' settings, never a field: each
    one's fields (nested ones included) are bound to it, and the prototypes stay unbound."""
    one, other = serializer_class(), serializer_class()
    ones, others = dict(every_field(one)), dict(every_field(other))
    assert ones and ones.keys() == others.keys()
    prototypes = serializer_class._field_prototypes
    for path, field in ones.items():
        assert field is not others[path], path
        assert field.root is one and others[path].root is other, path
    for name, (prototype, _) in prototypes.items():
        assert prototype.parent is None and prototype.field_name is None, name
        assert ones[name] is not prototype
    # A serializer that validates input gets fields built again from their arguments, as DRF's.
    writing = serializer_class(data={})
    for name, (prototype, _) in prototypes.items():
        assert writing.fields[name].error_messages is not prototype.error_messages, name
        assert writing.fields[name].root is writing
