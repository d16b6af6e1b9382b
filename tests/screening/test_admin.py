"""The screening admins: view-only for hospital admins and superusers alike (no file
upload, AI results immutable, nothing deleted), limited to the admin's hospitals, reads
audited. The generic tenant checks over every admin are in tests/hospitals/test_admin.py."""

import pytest
from django.contrib import admin
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.models import AuditEvent
from screening.models import AiResult, Review, Scan, Screening

from ..factories import UserFactory, add_screening, hospital_world

MODELS = [Scan, Screening, AiResult, Review]


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")
    add_screening(a, tag="ALPHA")
    add_screening(b, tag="BETA")
    return a, b


@pytest.fixture
def superuser(db):
    return UserFactory(is_superuser=True, is_staff=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def obj_of(world, model):
    return {Scan: world.scan, Screening: world.screening, AiResult: world.result, Review: world.review}[model]


def info(model) -> str:
    return f"admin:{model._meta.app_label}_{model._meta.model_name}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("who", ["hospital_admin", "superuser"])
def test_read_only_for_everyone(worlds, superuser, model, who):
    a, _ = worlds
    client = client_for(a.admin if who == "hospital_admin" else superuser)
    obj = obj_of(a, model)
    page = client.get(reverse(f"{info(model)}_change", args=[obj.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'type="file"' not in body and 'name="_save"' not in body  # no form to submit
    assert page.context["has_change_permission"] is False and page.context["has_delete_permission"] is False
    assert client.get(reverse(f"{info(model)}_add")).status_code == 403
    assert client.post(reverse(f"{info(model)}_change", args=[obj.pk]), {"reason": "changed"}).status_code == 403
    assert client.post(reverse(f"{info(model)}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    with scopes_disabled():
        assert model.objects.filter(pk=obj.pk).exists()
    changelist = client.get(reverse(f"{info(model)}_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()


def test_scan_page_shows_format_size_sha256_duplicate_and_no_media_url(worlds):
    a, _ = worlds
    body = client_for(a.admin).get(reverse(f"{info(Scan)}_change", args=[a.scan.pk])).content.decode()
    assert a.scan.sha256 in body and str(a.scan.size_bytes) in body and "PNG" in body
    assert "Duplicate" in body
    # The files are offered only through the portal's private view, never by storage path.
    assert a.scan.file.name not in body and a.scan.preview.name not in body
    assert reverse("screening:scan_original", kwargs={"hospital_slug": "alpha", "pk": a.scan.pk}) in body


def test_scan_changelist_flags_duplicates(worlds):
    from django_scopes import scope

    from screening import services

    a, _ = worlds
    with scope(hospital=a.hospital):
        with a.scan.file.open("rb") as fh:
            again = services.scan_upload(patient=a.patient, data=fh.read(), filename="again.png", actor=a.clinician)
    response = client_for(a.admin).get(reverse(f"{info(Scan)}_changelist"))
    rows = {scan.pk: scan for scan in response.context["cl"].result_list}
    assert rows[again.scan_id].duplicate_of_id == a.scan.pk
    assert f"{a.scan.sha256[:12]}…" in response.content.decode()


def test_screening_changelist_filters_by_status(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    url = reverse(f"{info(Screening)}_changelist")
    assert {s.pk for s in client.get(url + "?status__exact=done").context["cl"].result_list} == {a.screening.pk}
    assert not client.get(url + "?status__exact=queued").context["cl"].result_list


def test_airesult_page_shows_model_and_probabilities(worlds):
    a, _ = worlds
    body = client_for(a.admin).get(reverse(f"{info(AiResult)}_change", args=[a.result.pk])).content.decode()
    assert a.result.model_version in body and a.result.model_sha256 in body and "covid_suspected" in body
    assert a.result.heatmap.name not in body


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_hospital_admin_sees_only_own_hospital(worlds, model):
    a, b = worlds
    client = client_for(a.admin)
    response = client.get(reverse(f"{info(model)}_changelist"))
    assert {obj.pk for obj in response.context["cl"].result_list} == {obj_of(a, model).pk}
    for secret in b.secrets:
        assert secret not in response.content.decode()
    assert client.get(reverse(f"{info(model)}_change", args=[obj_of(b, model).pk])).status_code == 404


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_superuser_sees_every_hospital(worlds, superuser, model):
    a, b = worlds
    response = client_for(superuser).get(reverse(f"{info(model)}_changelist"))
    assert {obj.pk for obj in response.context["cl"].result_list} == {obj_of(a, model).pk, obj_of(b, model).pk}


def test_clinicians_are_kept_out(worlds):
    a, _ = worlds
    response = client_for(a.clinician).get(reverse(f"{info(Scan)}_changelist"), follow=True)
    assert response.status_code == 403


def test_admin_reads_are_audited(worlds):
    a, _ = worlds
    client = client_for(a.admin)
    client.get(reverse(f"{info(Scan)}_change", args=[a.scan.pk]))
    client.get(reverse(f"{info(Review)}_changelist"))
    with scopes_disabled():
        view = AuditEvent.objects.get(action="view", object_type="scan", object_id=str(a.scan.pk))
        listed = AuditEvent.objects.get(action="list", object_type="review")
    assert view.actor_id == a.admin.pk and view.detail == {"patient": a.patient.pk, "via": "admin"}
    assert listed.hospital_id == a.hospital.pk and listed.detail["ids"] == [a.review.pk]



def test_a_pages_entries_are_one_transaction_in_hospital_order(worlds, superuser, monkeypatch):
    """A platform admin's page spans hospitals: an entry per hospital, appended in hospital id
    order (two pages lock the chains' heads in the same order) and committed together."""
    import hospitals.admin as hospital_admin

    url = reverse(f"{info(Screening)}_changelist")
    client = client_for(superuser)
    client.get(url)
    ordered = sorted(worlds, key=lambda world: world.hospital.pk)
    with scopes_disabled():
        listed = list(AuditEvent.objects.filter(action="list", object_type="screening").order_by("pk"))
    assert [(e.hospital_id, e.detail["ids"]) for e in listed] == [(w.hospital.pk, [w.screening.pk]) for w in ordered]

    appended, append = [], hospital_admin.audit_record

    def second_one_fails(**kwargs):
        appended.append(kwargs["hospital"].pk)
        if len(appended) == 2:
            raise DatabaseError("the audit table is full")
        return append(**kwargs)

    monkeypatch.setattr(hospital_admin, "audit_record", second_one_fails)
    with pytest.raises(DatabaseError):
        client.get(url)
    assert appended == [w.hospital.pk for w in ordered]
    with scopes_disabled():  # the first hospital's entry went with the second's
        assert AuditEvent.objects.filter(action="list", object_type="screening").count() == len(listed)

def test_registered_with_the_tenant_mixin():
    from hospitals.admin import TenantAdminMixin

    for model in MODELS:
        assert isinstance(admin.site._registry[model], TenantAdminMixin)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_changelist_reads_its_page_without_joins(worlds, superuser, model):
    """The page's rows come from the model's table alone, in the changelist's order, and the
    related rows it shows by primary key (joined, MariaDB could sort every row for a page)."""
    client = client_for(superuser)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse(f"{info(model)}_changelist"))
    assert page.status_code == 200
    assert {row.pk for row in page.context["cl"].result_list} == {obj_of(w, model).pk for w in worlds}
    table = connection.ops.quote_name(model._meta.db_table)
    listing = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith("SELECT") and f"FROM {table}" in q["sql"] and "ORDER BY" in q["sql"]
               and "COUNT(" not in q["sql"] and "DISTINCT" not in q["sql"]]
    assert listing and all(" JOIN " not in sql for sql in listing)
    for related in page.context["cl"].list_select_related:
        for row in page.context["cl"].result_list:
            assert related in row._state.fields_cache  # prefetched: reading it runs no query


def test_the_decision_filter_needs_no_query_for_its_choices(worlds, superuser):
    a, _ = worlds
    client = client_for(superuser)
    url = reverse(f"{info(AiResult)}_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"] and "decision" in q["sql"]]
    assert "COVID-19 suspected" in page.content.decode()
    with scopes_disabled():
        AiResult.objects.filter(pk=a.result.pk).update(decision="covid_not_suspected")
    shown = client.get(url, {"decision__exact": "covid_not_suspected"}).context["cl"].result_list
    assert [r.pk for r in shown] == [a.result.pk]


def test_the_model_version_filter_reads_its_choices_from_the_index_and_shows_only_own_results(worlds):
    """Its choices are the classifier versions of every hospital's results (the deployment's
    names), read without the hospital's rows; what it shows stays the admin's hospital's."""
    a, b = worlds
    with scopes_disabled():
        AiResult.objects.filter(pk=b.result.pk).update(model_version="9.9.9")
    client = client_for(a.admin)
    url = reverse(f"{info(AiResult)}_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    choices = [c["display"] for spec in page.context["cl"].filter_specs if spec.title == "model version"
               for c in spec.choices(page.context["cl"])]
    assert {a.result.model_version, "9.9.9"} <= set(choices)
    versions_sql = [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"] and "model_version" in q["sql"]]
    assert versions_sql and all("hospital_id" not in sql for sql in versions_sql)
    shown = {r.pk for r in client.get(url, {"model_version__exact": a.result.model_version}).context["cl"].result_list}
    assert shown == {a.result.pk}
    assert not client.get(url, {"model_version__exact": "9.9.9"}).context["cl"].result_list
