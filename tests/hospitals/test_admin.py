"""The Django admin for hospital admins: only their hospitals' rows, choices and history;
permissions from the role table; clinicians kept out; superusers see everything."""

import datetime
import json
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.admin_site import HospitalAdminSite
from hospitals.models import AuditEvent, Hospital, Membership, Role, User
from patients.models import LabTest, Patient, StatusChange
from screening.models import AiResult, Review, Scan, Screening
from webhooks.models import Attempt, Delivery, Endpoint

from ..factories import HospitalFactory, UserFactory, add_screening, add_webhook, hospital_world


class FormValues(HTMLParser):
    """The values a browser would submit from the page's main form."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.data[name] = attrs.get("value", "on")
            else:
                self.data[name] = attrs.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data.lstrip("\n")


def form_values(response) -> dict[str, str]:
    parser = FormValues()
    parser.feed(response.content.decode())
    return parser.data


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")
    add_screening(a, tag="ALPHA")
    add_screening(b, tag="BETA")
    add_webhook(a, tag="ALPHA")
    add_webhook(b, tag="BETA")
    return a, b


@pytest.fixture
def superuser(db):
    return UserFactory(is_superuser=True, is_staff=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def own_rows(model, hospital_ids):
    """What a hospital admin of `hospital_ids` should see of `model`, computed independently."""
    with scopes_disabled():
        if model is Hospital:
            return set(Hospital.objects.filter(pk__in=hospital_ids).values_list("pk", flat=True))
        if model is User:
            return set(User.objects.filter(memberships__hospital_id__in=hospital_ids).values_list("pk", flat=True))
        return set(model.objects.filter(hospital_id__in=hospital_ids).values_list("pk", flat=True))


def all_rows(model):
    with scopes_disabled():
        return set(model._default_manager.values_list("pk", flat=True))


TENANT_MODELS = [Hospital, User, Membership, AuditEvent, Patient, LabTest, StatusChange, Scan, Screening, AiResult,
                 Review, Endpoint, Delivery, Attempt]
REGISTERED = [m for m in sorted(admin.site._registry, key=lambda m: m._meta.label) if m in TENANT_MODELS]
PLATFORM_ONLY = [m for m in sorted(admin.site._registry, key=lambda m: m._meta.label) if m not in TENANT_MODELS]


def test_the_admin_site_is_the_hospital_admin_site():
    assert isinstance(admin.site, HospitalAdminSite)
    assert {Hospital, User, Membership, AuditEvent, Patient, LabTest, StatusChange} <= set(admin.site._registry)


# --- who may enter --------------------------------------------------------------------------------
def test_clinician_cannot_use_the_admin_at_all(worlds):
    a, _ = worlds
    client = client_for(a.clinician)
    for url in ["/admin/", reverse("admin:patients_patient_changelist"),
                reverse("admin:patients_patient_change", args=[a.patient.pk])]:
        response = client.get(url, follow=True)
        assert response.status_code == 403
        assert a.patient.mrn not in response.content.decode()


def test_staff_flag_without_admin_membership_grants_nothing(worlds):
    a, _ = worlds
    with scopes_disabled():
        Membership.objects.filter(user=a.clinician).update(role=Role.VIEWER)
    User.objects.filter(pk=a.clinician.pk).update(is_staff=True)
    response = client_for(a.clinician).get(reverse("admin:patients_patient_changelist"), follow=True)
    assert response.status_code == 403


def test_anonymous_is_sent_to_the_portal_sign_in(db):
    response = Client().get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))


def test_deactivated_admin_membership_closes_the_admin(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    assert client.get("/admin/").status_code == 200
    with scopes_disabled():
        Membership.objects.filter(pk=a.admin_membership.pk).update(is_active=False)
    assert client.get("/admin/", follow=True).status_code == 403


def test_inactive_hospital_closes_its_admin(worlds):
    a, _ = worlds
    Hospital.objects.filter(pk=a.hospital.pk).update(is_active=False)
    assert client_for(a.admin).get("/admin/", follow=True).status_code == 403


# --- what a hospital admin sees ----------------------------------------------------------------------
@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_hospital_admin_changelist_holds_only_own_rows(worlds, model):
    a, b = worlds
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client_for(a.admin).get(url)
    assert response.status_code == 200
    changelist = response.context["cl"]
    expected = own_rows(model, [a.hospital.pk])
    assert expected, "the fixture must give the hospital admin something to see"
    assert changelist.result_count == len(expected)
    assert {obj.pk for obj in changelist.result_list} == expected
    assert not ({obj.pk for obj in changelist.result_list} & (all_rows(model) - expected))
    body = response.content.decode()
    for secret in b.secrets + [b.hospital.name]:
        assert secret not in body


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_superuser_changelist_holds_every_row(worlds, superuser, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client_for(superuser).get(url)
    assert response.status_code == 200
    assert {obj.pk for obj in response.context["cl"].result_list} == all_rows(model)


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_hospital_admin_form_choices_are_only_own(worlds, model):
    """Every FK and M2M a form of any registered admin offers holds only own rows."""
    a, b = worlds
    request = RequestFactory().get("/admin/")
    request.user = a.admin
    model_admin = admin.site._registry[model]
    checked = 0
    with scope(hospital=[a.hospital.pk]):
        for field in model._meta.get_fields():
            if not (field.is_relation and (field.many_to_one or field.many_to_many) and field.concrete):
                continue
            if field.remote_field.model not in TENANT_MODELS:  # groups, permissions: platform-wide
                continue
            if field.many_to_one:
                formfield = model_admin.formfield_for_foreignkey(field, request)
            else:
                formfield = model_admin.formfield_for_manytomany(field, request)
            if formfield is None:
                continue
            offered = {obj.pk for obj in formfield.queryset}
            allowed = own_rows(field.remote_field.model, [a.hospital.pk])
            assert offered <= allowed, f"{model._meta.label}.{field.name} offers another hospital's rows"
            checked += 1
    assert checked >= (0 if model in (Hospital, User) else 1)


def test_patient_add_form_offers_only_own_hospital(worlds):
    a, b = worlds
    response = client_for(a.admin).get(reverse("admin:patients_patient_add"))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'<option value="{a.hospital.pk}"' in body
    assert f'<option value="{b.hospital.pk}"' not in body
    assert b.hospital.name not in body


def test_hospital_admin_cannot_post_another_hospitals_id_into_a_relation(worlds):
    a, b = worlds
    client = client_for(a.admin)
    data = {"hospital": b.hospital.pk, "mrn": "X-1", "given_name": "Eve", "family_name": "Smuggle",
            "sex": "female", "birth_date": "1990-01-01",
            "status_changes-TOTAL_FORMS": "0", "status_changes-INITIAL_FORMS": "0",
            "lab_tests-TOTAL_FORMS": "0", "lab_tests-INITIAL_FORMS": "0"}
    response = client.post(reverse("admin:patients_patient_add"), data)
    assert response.status_code == 200  # the form again, with an error
    assert "hospital" in response.context["adminform"].form.errors
    with scopes_disabled():
        assert not Patient.objects.filter(mrn="X-1").exists()


def test_patient_autocomplete_returns_nothing_of_another_hospital(worlds):
    a, b = worlds
    client = client_for(a.admin)
    url = "/admin/autocomplete/?app_label=patients&model_name=labtest&field_name=patient&term="
    foreign = client.get(url + b.patient.mrn)
    assert foreign.status_code == 200
    assert json.loads(foreign.content)["results"] == []
    assert b.patient.mrn not in foreign.content.decode()
    own = client.get(url + a.patient.mrn)
    assert [r["id"] for r in json.loads(own.content)["results"]] == [str(a.patient.pk)]


def test_user_autocomplete_is_limited_to_members(worlds):
    a, b = worlds
    response = client_for(a.admin).get(
        "/admin/autocomplete/?app_label=hospitals&model_name=membership&field_name=user&term=example.org")
    ids = {int(r["id"]) for r in json.loads(response.content)["results"]}
    assert ids == {a.admin.pk, a.clinician.pk}


def test_hospital_list_filter_names_only_own_hospital(worlds):
    a, b = worlds
    body = client_for(a.admin).get(reverse("admin:patients_patient_changelist")).content.decode()
    assert a.hospital.name in body
    assert b.hospital.name not in body


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_change_and_history_of_another_hospitals_object_are_404(worlds, model):
    a, b = worlds
    foreign = {Hospital: b.hospital, User: b.clinician, Membership: b.clinician_membership,
               AuditEvent: b.audit_event, Patient: b.patient, LabTest: b.lab_test,
               StatusChange: b.status_change, Scan: b.scan, Screening: b.screening, AiResult: b.result,
               Review: b.review, Endpoint: b.endpoint, Delivery: b.delivery, Attempt: b.attempt}[model]
    own = {Hospital: a.hospital, User: a.clinician, Membership: a.clinician_membership,
           AuditEvent: a.audit_event, Patient: a.patient, LabTest: a.lab_test,
           StatusChange: a.status_change, Scan: a.scan, Screening: a.screening, AiResult: a.result,
           Review: a.review, Endpoint: a.endpoint, Delivery: a.delivery, Attempt: a.attempt}[model]
    client = client_for(a.admin)
    info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    for view in ["change", "history", "delete"]:
        assert client.get(reverse(f"{info}_{view}", args=[foreign.pk])).status_code == 404, view
        assert client.post(reverse(f"{info}_{view}", args=[foreign.pk]), {"post": "yes"}).status_code == 404, view
    assert client.get(reverse(f"{info}_change", args=[own.pk])).status_code == 200
    assert client.get(reverse(f"{info}_history", args=[own.pk])).status_code == 200


def test_simple_history_views_of_another_hospitals_patient_are_404(worlds):
    a, b = worlds
    client = client_for(a.admin)
    assert client.get(reverse("admin:patients_patient_history", args=[b.patient.pk])).status_code == 404
    url = reverse("admin:patients_patient_simple_history", args=[b.patient.pk, b.history_id])
    assert client.get(url).status_code == 404
    own = client.get(reverse("admin:patients_patient_simple_history", args=[a.patient.pk, a.history_id]))
    assert own.status_code == 200
    assert a.patient.mrn in own.content.decode()


def test_history_cannot_be_reverted(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:patients_patient_simple_history", args=[a.patient.pk, a.history_id])
    data = form_values(client.get(url))
    data["family_name"] = "Reverted"
    assert client.post(url, data).status_code == 404
    with scopes_disabled():
        assert Patient.objects.get(pk=a.patient.pk).family_name == a.patient.family_name


def test_hospital_admin_cannot_change_a_members_password(worlds):
    a, b = worlds
    client = client_for(a.admin)
    assert client.get(reverse("admin:auth_user_password_change", args=[a.clinician.pk])).status_code == 403
    assert client.get(reverse("admin:auth_user_password_change", args=[b.clinician.pk])).status_code == 404


# --- writes go through the services and are audited ---------------------------------------------
def _audit_count(**filters):
    with scopes_disabled():
        return AuditEvent.objects.filter(**filters).count()


def test_admin_patient_edit_goes_through_the_service_and_is_audited(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:patients_patient_change", args=[a.patient.pk])
    data = form_values(client.get(url))
    data.update(family_name="Renamed", status="deceased")  # status is read-only: ignored
    before = _audit_count(action="update", object_type="patient", object_id=str(a.patient.pk))
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    with scopes_disabled():
        patient = Patient.objects.get(pk=a.patient.pk)
        event = AuditEvent.objects.filter(action="update", object_id=str(patient.pk)).order_by("-seq").first()
    assert patient.family_name == "Renamed"
    assert patient.status == "carrier"
    assert _audit_count(action="update", object_type="patient", object_id=str(patient.pk)) == before + 1
    assert event.detail["fields"] == ["family_name"]
    assert event.actor_id == a.admin.pk


def test_admin_patient_add_goes_through_the_service(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:patients_patient_add")
    data = form_values(client.get(url))
    data.update(hospital=str(a.hospital.pk), mrn="ADM-1", given_name="Ada", family_name="Added",
                sex="female", birth_date="1991-02-03")
    response = client.post(url, data)
    assert response.status_code == 302
    with scopes_disabled():
        patient = Patient.objects.get(hospital=a.hospital, mrn="ADM-1")
        assert patient.status_changes.count() == 1  # registered as suspected by patient_create
    assert _audit_count(action="create", object_type="patient", object_id=str(patient.pk)) == 1


def test_admin_refuses_a_duplicate_mrn_and_a_future_birth_date_in_the_form(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:patients_patient_add")
    data = form_values(client.get(url))
    future = (datetime.date.today() + datetime.timedelta(days=3)).isoformat()
    data.update(hospital=str(a.hospital.pk), mrn=a.patient.mrn, given_name="D", family_name="Dup",
                sex="female", birth_date=future)
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "mrn" in errors and "birth_date" in errors


def test_admin_patient_change_view_is_an_audited_read(worlds):
    a, _ = worlds
    before = _audit_count(action="view", object_type="patient", object_id=str(a.patient.pk))
    client_for(a.admin).get(reverse("admin:patients_patient_change", args=[a.patient.pk]))
    assert _audit_count(action="view", object_type="patient", object_id=str(a.patient.pk)) == before + 1


def test_admin_membership_deactivation_uses_the_service(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:hospitals_membership_change", args=[a.clinician_membership.pk])
    data = form_values(client.get(url))
    data.pop("is_active", None)  # unticked checkbox
    response = client.post(url, data)
    assert response.status_code == 302
    with scopes_disabled():
        membership = Membership.objects.get(pk=a.clinician_membership.pk)
        event = AuditEvent.objects.filter(object_type="membership", object_id=str(membership.pk)).order_by("-seq")[0]
    assert membership.is_active is False and membership.deactivated_at is not None
    assert event.detail == {"active": False}


def test_admin_cannot_deactivate_themselves(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse("admin:hospitals_membership_change", args=[a.admin_membership.pk])
    data = form_values(client.get(url))
    data.pop("is_active", None)
    response = client.post(url, data)
    assert response.status_code == 200
    assert "is_active" in response.context["adminform"].form.errors


# --- the role table ---------------------------------------------------------------------------------
# (view, add, change, delete) in the admin.
HOSPITAL_ADMIN_RIGHTS = {
    Hospital: (True, False, False, False),
    User: (True, False, False, False),
    Membership: (True, False, True, False),
    AuditEvent: (True, False, False, False),
    Patient: (True, True, True, False),
    LabTest: (True, False, False, False),
    StatusChange: (True, False, False, False),
    Scan: (True, False, False, False),
    Screening: (True, False, False, False),
    AiResult: (True, False, False, False),
    Review: (True, False, False, False),
    Endpoint: (True, False, False, False),
    Delivery: (True, False, False, False),
    Attempt: (True, False, False, False),
}
SUPERUSER_RIGHTS = {
    Hospital: (True, True, True, False),
    User: (True, True, True, False),
    Membership: (True, True, True, False),
    AuditEvent: (True, False, False, False),
    Patient: (True, True, True, False),
    LabTest: (True, True, False, False),
    StatusChange: (True, False, False, False),
    Scan: (True, False, False, False),
    Screening: (True, False, False, False),
    AiResult: (True, False, False, False),
    Review: (True, False, False, False),
    Endpoint: (True, False, False, False),
    Delivery: (True, False, False, False),
    Attempt: (True, False, False, False),
}


def _rights(model_admin, user, obj=None):
    request = RequestFactory().get("/admin/")
    request.user = user
    return (
        model_admin.has_view_permission(request, obj),
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request, obj),
        model_admin.has_delete_permission(request, obj),
    )


def test_role_table_covers_every_registered_tenant_model():
    assert set(HOSPITAL_ADMIN_RIGHTS) == set(SUPERUSER_RIGHTS) == set(REGISTERED) == set(TENANT_MODELS)


def test_every_other_registered_model_is_platform_only():
    """Third-party admins (allauth, auth.Group) span every hospital: superusers only."""
    from hospitals.admin import PlatformOnlyAdminMixin

    assert PLATFORM_ONLY
    for model in PLATFORM_ONLY:
        assert isinstance(admin.site._registry[model], PlatformOnlyAdminMixin), model


@pytest.mark.parametrize("model", PLATFORM_ONLY, ids=lambda m: m._meta.label)
def test_platform_only_admins_refuse_hospital_admins_even_with_django_permissions(worlds, superuser, model):
    from django.contrib.auth.models import Permission

    a, _ = worlds
    a.admin.user_permissions.add(*Permission.objects.filter(content_type__app_label=model._meta.app_label))
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client_for(User.objects.get(pk=a.admin.pk)).get(url).status_code == 403
    assert client_for(superuser).get(url).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_admin_rights_by_role(worlds, superuser, model):
    a, b = worlds
    model_admin = admin.site._registry[model]
    own = {Hospital: a.hospital, User: a.clinician, Membership: a.clinician_membership,
           AuditEvent: a.audit_event, Patient: a.patient, LabTest: a.lab_test,
           StatusChange: a.status_change, Scan: a.scan, Screening: a.screening, AiResult: a.result,
           Review: a.review, Endpoint: a.endpoint, Delivery: a.delivery, Attempt: a.attempt}[model]
    foreign = {Hospital: b.hospital, User: b.clinician, Membership: b.clinician_membership,
               AuditEvent: b.audit_event, Patient: b.patient, LabTest: b.lab_test,
               StatusChange: b.status_change, Scan: b.scan, Screening: b.screening, AiResult: b.result,
               Review: b.review, Endpoint: b.endpoint, Delivery: b.delivery, Attempt: b.attempt}[model]
    with scope(hospital=[a.hospital.pk]):
        assert _rights(model_admin, a.admin) == HOSPITAL_ADMIN_RIGHTS[model]
        view, _, change, delete = HOSPITAL_ADMIN_RIGHTS[model]
        assert _rights(model_admin, a.admin, own)[::2] == (view, change)
        assert _rights(model_admin, a.admin, foreign) == (False, HOSPITAL_ADMIN_RIGHTS[model][1], False, False)
        for role in [Role.CLINICIAN, Role.RADIOLOGIST, Role.REGISTRAR, Role.VIEWER]:
            with scopes_disabled():
                Membership.objects.filter(pk=a.clinician_membership.pk).update(role=role)
            assert _rights(model_admin, a.clinician) == (False, False, False, False), role
            assert model_admin.has_module_permission(_request_for(a.clinician)) is False
    with scopes_disabled():
        assert _rights(model_admin, superuser) == SUPERUSER_RIGHTS[model]
        assert _rights(model_admin, superuser, foreign)[::2] == SUPERUSER_RIGHTS[model][::2]


def _request_for(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_module_list_on_the_index_matches_the_role_table(worlds):
    a, _ = worlds
    response = client_for(a.admin).get("/admin/")
    listed = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    assert listed == {m.__name__ for m, rights in HOSPITAL_ADMIN_RIGHTS.items() if rights[0]}


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_bulk_delete_action_is_not_offered(worlds, superuser, model):
    request = _request_for(superuser)
    assert "delete_selected" not in admin.site._registry[model].get_actions(request)


# --- superuser writes, through the services -------------------------------------------------------
def test_superuser_adds_a_lab_test_through_the_service(worlds, superuser):
    a, _ = worlds
    client = client_for(superuser)
    url = reverse("admin:patients_labtest_add")
    data = form_values(client.get(url))
    data.update(patient=str(a.patient.pk), test_type="antigen", result="negative",
                sample_date=datetime.date.today().isoformat(), notes="admin entry")
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    with scopes_disabled():
        test = LabTest.objects.get(notes="admin entry")
        event = AuditEvent.objects.filter(object_type="labtest", object_id=str(test.pk)).get()
    assert (test.hospital_id, test.recorded_by_id) == (a.hospital.pk, superuser.pk)
    assert event.actor_id == superuser.pk and event.hospital_id == a.hospital.pk


def test_superuser_creates_a_hospital_a_user_and_a_membership(db, superuser):
    client = client_for(superuser)
    url = reverse("admin:hospitals_hospital_add")
    data = form_values(client.get(url))
    data.update(name="Gamma", slug="gamma", is_active="on")
    assert client.post(url, data).status_code == 302
    hospital = Hospital.objects.get(slug="gamma")
    assert _audit_count(action="create", object_type="hospital", hospital=hospital) == 1

    url = reverse("admin:hospitals_user_add")
    data = form_values(client.get(url))
    data.update(email="New.Person@Example.org", first_name="New", last_name="Person")
    assert client.post(url, data).status_code == 302
    person = User.objects.get(email="new.person@example.org")
    assert not person.has_usable_password()
    data.update(email="NEW.PERSON@example.org")
    response = client.post(url, data)
    assert response.status_code == 200 and "email" in response.context["adminform"].form.errors

    url = reverse("admin:hospitals_membership_add")
    data = form_values(client.get(url))
    data.update(user=str(person.pk), hospital=str(hospital.pk), role=Role.CLINICIAN)
    assert client.post(url, data).status_code == 302
    with scopes_disabled():
        membership = Membership.objects.get(user=person, hospital=hospital)
    assert membership.invited_by == superuser
    assert _audit_count(action="create", object_type="membership", object_id=str(membership.pk)) == 1


def test_audit_object_type_filter_lists_the_kinds_and_shows_only_own_entries(worlds):
    """Its choices are the kinds of object audited anywhere (names from the code, read from
    their index without the hospital's entries); what it shows stays the admin's hospital's."""
    from hospitals.audit import audit_record

    a, b = worlds
    with scopes_disabled():
        audit_record(action="view", object_type="only_in_beta", object_id=1, hospital=b.hospital)
        a_patients = set(AuditEvent.objects.filter(hospital=a.hospital, object_type="patient").values_list("pk",
                                                                                                      flat=True))
    client = client_for(a.admin)
    url = reverse("admin:hospitals_auditevent_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    choices = [c["display"] for spec in page.context["cl"].filter_specs if spec.title == "object type"
               for c in spec.choices(page.context["cl"])]
    assert {"patient", "only_in_beta"} <= set(choices)
    kinds_sql = [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"] and "object_type" in q["sql"]]
    assert kinds_sql and all("hospital_id" not in sql for sql in kinds_sql)
    shown = {e.pk for e in client.get(url, {"object_type__exact": "patient"}).context["cl"].result_list}
    assert a_patients and shown == a_patients
    assert not client.get(url, {"object_type__exact": "only_in_beta"}).context["cl"].result_list


@pytest.mark.parametrize("model", [Patient, StatusChange, LabTest, Scan, Screening, AiResult, Review, Delivery,
                                   AuditEvent], ids=lambda m: m.__name__)
def test_the_hospital_filter_lists_the_hospitals_with_rows_from_their_index(worlds, superuser, model):
    """Its choices are the hospitals that hold rows of the list (of the admin's hospitals
    only), their ids read as distinct values, not through `IN (SELECT hospital_id ...)`."""
    a, b = worlds
    HospitalFactory(name="Gamma Empty", slug="gamma")  # no rows: not a choice
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    for user, expected in ((superuser, {a.hospital.name, b.hospital.name}), (a.admin, {a.hospital.name})):
        with CaptureQueriesContext(connection) as queries:
            page = client_for(user).get(url)
        specs = [spec for spec in page.context["cl"].filter_specs if getattr(spec, "field_path", "") == "hospital"]
        choices = {c["display"] for spec in specs for c in spec.choices(page.context["cl"])} - {"All", "-"}
        # "-": entries without a hospital. Django hides a filter of one choice (one hospital's admin).
        assert choices == expected if user is superuser else choices <= expected
        assert not [q["sql"] for q in queries.captured_queries
                    if q["sql"].startswith("SELECT") and "hospitals_hospital" in q["sql"] and "IN (SELECT" in q["sql"]]
