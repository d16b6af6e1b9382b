"""A3: another hospital's object smuggled in through a reference: every writable foreign
key of every API serializer (found from the serializers and sent to every write operation
of the OpenAPI schema that takes it), every choice field of every admin form a hospital
admin gets, and the portal's one object choice (a status change's lab test), each given
hospital B's id by hospital A. Each is refused; `hospital` itself in a body is ignored."""

import datetime

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.test import Client, RequestFactory
from django.urls import resolve, reverse
from django_scopes import scope, scopes_disabled
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from hospitals.models import Hospital
from patients.models import Patient, StatusChange
from tests.api.test_isolation_api import API_ROUTES

from ..test_isolation import tenant_object

APPS = ("hospitals", "patients", "screening", "webhooks", "fhir_facade")


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def writable_foreign_keys() -> dict[str, type]:
    """field name -> model of every writable related field declared by the project's serializers."""
    found = {}
    for serializer in all_subclasses(serializers.Serializer):
        if not serializer.__module__.startswith(APPS):
            continue
        for name, field in serializer._declared_fields.items():
            if isinstance(field, serializers.RelatedField) and not field.read_only:
                found[name] = getattr(field, "model", None) or field.queryset.model
    return found


def write_operations():
    """(path, method, body property names) of every write operation in the OpenAPI schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch"):
                continue
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                ref = content["schema"].get("$ref", "")
                properties = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
                yield path, method, media, set(properties)


def test_every_writable_foreign_key_refuses_another_hospitals_id(worlds, make_partner, figure):
    a, b = worlds
    _, api = make_partner(a.hospital)
    foreign_keys = writable_foreign_keys()
    assert set(foreign_keys) >= {"patient", "lab_test", "result"}
    with scopes_disabled():
        b_objects = {name: tenant_object(b, model) for name, model in foreign_keys.items()}
    injections, accepted, used = 0, [], set()
    for path, method, media, properties in write_operations():
        targets = properties & set(foreign_keys)
        if not targets:
            continue
        url = path.replace("{hospital_slug}", a.hospital.slug)
        if "{id}" in url:
            name = resolve(url.replace("{id}", "1")).view_name
            url = url.replace("{id}", str(API_ROUTES[name](a).pk))
        for field in sorted(targets):
            used.add(field)
            fmt = "multipart" if media.startswith("multipart") else "json"
            response = getattr(api, method)(url, {field: b_objects[field].pk}, format=fmt)
            injections += 1
            errors = response.json().get("errors", {}) if response.status_code == 400 else {}
            if field not in errors:
                accepted.append(f"{method.upper()} {url} {field}={b_objects[field].pk}: {response.status_code}")
    assert used == set(foreign_keys), f"foreign keys no operation takes: {set(foreign_keys) - used}"
    # `hospital` in a body is ignored: the patient is A's.
    body = {"mrn": "INJ-1", "given_name": "In", "family_name": "Jection", "sex": "female",
            "birth_date": "1990-01-01", "hospital": b.hospital.pk}
    response = api.post(reverse("api:patient-list", kwargs={"hospital_slug": "alpha"}), body, format="json")
    assert response.status_code == 201, response.content
    with scopes_disabled():
        assert Patient.objects.get(pk=response.json()["id"]).hospital == a.hospital
    injections += 1
    assert not accepted, "\n".join(accepted)
    figure("A3 api", f"writable FK fields: {len(foreign_keys)} ({', '.join(sorted(foreign_keys))}); injections: "
           f"{injections} (every write operation taking them, plus hospital=B); accepted 0",
           fields=len(foreign_keys), injections=injections, accepted=0)


def test_admin_form_choices_refuse_another_hospitals_objects(worlds, figure):
    a, b = worlds
    request = RequestFactory().get("/admin/")
    request.user = a.admin
    fields = injections = 0
    accepted = []
    with scope(hospital=[a.hospital.pk]):
        for model, model_admin in admin.site._registry.items():
            with scopes_disabled():
                own = tenant_object(a, model)
            for obj in (None, own):
                # Only forms this admin may submit (the others are never served to them).
                if not (model_admin.has_change_permission(request, obj) if obj else
                        model_admin.has_add_permission(request)):
                    continue
                form = model_admin.get_form(request, obj, change=obj is not None)
                for name, field in form.base_fields.items():
                    if not isinstance(field, ModelChoiceField):
                        continue
                    target = field.queryset.model
                    if target not in (Hospital, *[m for m in admin.site._registry]):
                        continue
                    with scopes_disabled():
                        foreign = tenant_object(b, target)
                    fields += 1
                    injections += 1
                    try:
                        field.clean([foreign.pk] if isinstance(field, ModelMultipleChoiceField) else foreign.pk)
                    except ValidationError:
                        continue
                    accepted.append(f"{model._meta.label} {'change' if obj else 'add'} form: {name}={foreign.pk}")
    assert fields >= 1
    assert not accepted, "\n".join(accepted)
    figure("A3 admin", f"admin form FK fields: {fields}; injections {injections}; accepted 0",
           fields=fields, injections=injections, accepted=0)


def test_a_status_change_cannot_cite_another_hospitals_lab_test(worlds):
    a, b = worlds
    client = Client()
    client.force_login(a.clinician)
    url = reverse("patients:change_status", kwargs={"hospital_slug": "alpha", "pk": a.patient.pk})
    with scopes_disabled():
        before = StatusChange.objects.filter(patient=a.patient).count()
    response = client.post(url, {"to_status": "recovered", "effective_date": str(datetime.date.today()),
                                 "reason": "probe", "lab_test": b.lab_test.pk})
    assert response.status_code in (200, 400)
    with scopes_disabled():
        assert StatusChange.objects.filter(patient=a.patient).count() == before
