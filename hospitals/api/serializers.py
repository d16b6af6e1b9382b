import copy
import datetime

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.fields import Field, SkipField
from rest_framework.relations import PKOnlyObject, PrimaryKeyRelatedField
from rest_framework.settings import api_settings

from hospitals.models import Hospital

from .fields import HospitalPrimaryKeyRelatedField, shallow_copy


class CredentialSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["client", "session"])
    name = serializers.CharField(help_text="The client's name, or the user's email address.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text="OAuth2 scopes (clients).")
    role = serializers.CharField(allow_null=True, help_text="Membership role (session users).")


class HospitalSerializer(serializers.ModelSerializer):
    """The hospital the credential is bound to, and what the credential may do there."""

    credential = serializers.SerializerMethodField()

    class Meta:
        model = Hospital
        fields = ["slug", "name", "credential"]

    def get_credential(self, hospital) -> CredentialSerializer:
        request = self.context["request"]
        client = getattr(request, "partner_client", None)
        if client is not None:
            data = {"kind": "client", "name": client.name, "scopes": sorted(request.auth.scope.split()), "role": None}
        else:
            data = {"kind": "session", "name": request.user.email, "scopes": [], "role": request.membership.role}
        return CredentialSerializer(data).data


def _holds_no_field(field) -> bool:
    """A field that holds no other field (a child, a child relation, a serializer's fields)."""
    def held(value):
        return isinstance(value, Field) or (
            isinstance(value, list | tuple | dict)
            and any(isinstance(item, Field) for item in (value.values() if isinstance(value, dict) else value)))

    return not isinstance(field, serializers.BaseSerializer) and not any(map(held, vars(field).values()))


# How FastReadMixin reads a field: a model attribute, the row itself, or through DRF.
_ATTR, _STAR, _FIELD = "attribute", "row", "field"
UTC_ZONES = ("UTC", "Etc/UTC")  # zoneinfo keys of zones whose offset is always zero


def _identity(value):
    return value


def _converter(field, tz):
    """The field's to_representation; `int` for an integer field that gives numbers (DRF's
    big-integer field looks up whether to give text for every value); for an ISO 8601
    DateTimeField, the same with the time zone looked up once, and a value already in UTC
    written out as it is when that zone is UTC (as the database gives them)."""
    if type(field) is serializers.IntegerField or (
            type(field) is serializers.BigIntegerField
            and not getattr(field, "coerce_to_string", api_settings.COERCE_BIGINT_TO_STRING)):
        return int
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    if (type(field) is not serializers.DateTimeField or tz is None or hasattr(field, "timezone")
            or not isinstance(output_format, str) or output_format.lower() != ISO_8601):
        return field.to_representation

    utc, in_utc = datetime.timezone.utc, tz is datetime.timezone.utc or getattr(tz, "key", None) in UTC_ZONES

    def datetime_iso(value):
        if in_utc and value.__class__ is datetime.datetime and value.tzinfo is utc:
            return value.isoformat()[:-6] + "Z"
        if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
            return field.to_representation(value)
        try:
            text = value.astimezone(tz).isoformat()
        except OverflowError:
            return field.to_representation(value)  # DRF's validation error
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return datetime_iso


# A ModelSerializer's `to_representation` without DRF's per-row, per-field
# machinery: which attribute each field reads is worked out once per serializer (per
# request), not for every row of a page. The output is DRF's, value for value:
#
# - a field on a concrete, non-relational model field reads the attribute and calls the
#   field's own `to_representation` (a DateTimeField in ISO 8601 converts to the
#   current time zone once looked up instead of once per value);
# - a `PrimaryKeyRelatedField` on a foreign key gives the stored id;
# - a field whose source is `*` (SerializerMethodField, custom fields) gets the row;
# - anything else (nested serializers, reverse relations, properties, dotted sources)
#   goes through DRF's own `get_attribute`, with its None and SkipField handling.
#
# A value that is not a model instance (validated data) goes through DRF unchanged.
#
# The fields themselves are built from the model once per serializer class. A serializer
# that validates input gets deep copies, as DRF gives of declared fields (a deep copy builds
# each field again from its arguments: 145 us for the patient's 14 fields, against 9 us).
# One that only writes output gets a shallow copy of each field that holds no other field:
# its own attributes, to be bound to it, sharing what reading never changes (validators,
# error messages, choices); nested serializers and fields with a child are deep-copied.
# (A comment, not a docstring: the OpenAPI schema would describe every serializer with it.)
class FastReadMixin:
    def get_fields(self):
        prototypes = type(self).__dict__.get("_field_prototypes")
        if prototypes is None:
            prototypes = {name: (field, _holds_no_field(field)) for name, field in super().get_fields().items()}
            type(self)._field_prototypes = prototypes
        if hasattr(self, "initial_data"):  # input to validate: DRF's own copies
            return {name: copy.deepcopy(field) for name, (field, _) in prototypes.items()}
        return {name: shallow_copy(field) if leaf else copy.deepcopy(field)
                for name, (field, leaf) in prototypes.items()}

    def to_representation(self, instance):
        if not isinstance(instance, models.Model):
            return super().to_representation(instance)
        plan = self.__dict__.get("_read_plan")
        if plan is None:
            plan = self._read_plan = self._build_read_plan()
        ret = {}
        for name, kind, attr, convert, field in plan:
            if kind is _ATTR:
                value = getattr(instance, attr)
                ret[name] = None if value is None else convert(value)
            elif kind is _STAR:
                ret[name] = convert(instance)
            else:
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
                check = value.pk if isinstance(value, PKOnlyObject) else value
                ret[name] = None if check is None else convert(value)
        return ret

    def _build_read_plan(self):
        opts = self.Meta.model._meta
        tz = timezone.get_current_timezone() if settings.USE_TZ else None
        plan = []
        for field in self._readable_fields:
            model_field = None
            if len(field.source_attrs) == 1:
                try:
                    model_field = opts.get_field(field.source_attrs[0])
                except FieldDoesNotExist:
                    pass
            plain = type(field).get_attribute is Field.get_attribute
            if field.source == "*" and plain:
                plan.append((field.field_name, _STAR, None, field.to_representation, field))
            elif plain and model_field is not None and model_field.concrete and not model_field.is_relation:
                plan.append((field.field_name, _ATTR, model_field.attname, _converter(field, tz), field))
            elif (model_field is not None and model_field.concrete
                  and (model_field.many_to_one or model_field.one_to_one)
                  and type(field) in (PrimaryKeyRelatedField, HospitalPrimaryKeyRelatedField)
                  and field.pk_field is None):
                plan.append((field.field_name, _ATTR, model_field.attname, _identity, field))
            else:
                plan.append((field.field_name, _FIELD, None, field.to_representation, field))
        return plan

