"""The one base class every API endpoint test inherits (NetBox's generic API test cases,
adapted): the same checks of tenancy, authentication, scopes, problem details, caching
and auditing run against each endpoint; a subclass names its route and objects and may
add its own tests."""

import datetime

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from rest_framework.test import APIClient

from hospitals.models import AuditEvent
from tests.factories import add_screening, hospital_world

MISSING = 987654321
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}
TODAY = datetime.date.today().isoformat()


def assert_problem(response, status_code):
    assert response.status_code == status_code, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= set(body) and body["status"] == status_code
    return body


class APIEndpointTest:
    """Subclasses set `basename` (router basename), `audit_object_type`, `object_of(world)`
    and, for writable endpoints, `create_scope`, `create_payload(world)` and
    `foreign_fields` (body fields that take an id of another hospital's object)."""

    basename: str = ""
    audit_object_type: str = ""
    create_scope: str | None = None
    foreign_fields: dict = {}
    multipart = False
    create_audit_action = "create"  # what the service records for a create

    @staticmethod
    def object_of(world):
        raise NotImplementedError

    def create_payload(self, world) -> dict:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _worlds(self, hospital_a, hospital_b, make_partner):
        self.a = hospital_world(hospital_a, tag="ALPHA")
        self.b = hospital_world(hospital_b, tag="BETA")
        add_screening(self.a, tag="ALPHA")
        add_screening(self.b, tag="BETA")
        self.client_a, self.api = make_partner(hospital_a)
        _, self.api_read = make_partner(hospital_a, scopes=["read"], name="Reader")

    # --- helpers ---------------------------------------------------------------------------
    def list_url(self, slug="alpha"):
        return reverse(f"api:{self.basename}-list", kwargs={"hospital_slug": slug})

    def detail_url(self, pk, slug="alpha"):
        return reverse(f"api:{self.basename}-detail", kwargs={"hospital_slug": slug, "pk": pk})

    def post(self, api, url, data):
        return api.post(url, data, format="multipart" if self.multipart else "json")

    def audit_rows(self, action):
        with scopes_disabled():
            return list(AuditEvent.objects.filter(hospital=self.a.hospital, action=action,
                                                  detail__client=self.client_a.client.pk))

    # --- reads -----------------------------------------------------------------------------
    def test_list_shows_own_hospital_only_and_is_audited(self):
        response = self.api.get(self.list_url())
        assert response.status_code == 200
        ids = [row["id"] for row in response.json()["results"]]
        assert self.object_of(self.a).pk in ids
        assert self.object_of(self.b).pk not in ids
        assert "no-store" in response["Cache-Control"]
        assert self.audit_rows("list"), "an API list read leaves an audit row"

    def test_detail_is_audited_and_not_cached(self):
        response = self.api.get(self.detail_url(self.object_of(self.a).pk))
        assert response.status_code == 200
        assert response.json()["id"] == self.object_of(self.a).pk
        assert "no-store" in response["Cache-Control"]
        rows = self.audit_rows("view")
        assert rows and rows[0].actor == self.client_a.client.service_user

    def test_other_hospitals_id_is_404_like_a_missing_one(self):
        foreign = self.api.get(self.detail_url(self.object_of(self.b).pk))
        missing = self.api.get(self.detail_url(MISSING))
        assert assert_problem(foreign, 404)["detail"] == assert_problem(missing, 404)["detail"]

    def test_other_hospitals_slug_is_404(self):
        assert_problem(self.api.get(self.list_url("beta")), 404)
        assert_problem(self.api.get(self.detail_url(self.object_of(self.b).pk, "beta")), 404)

    def test_no_credential_is_401(self):
        assert_problem(APIClient().get(self.list_url()), 401)
        assert_problem(APIClient().get(self.detail_url(self.object_of(self.a).pk)), 401)

    def test_cursor_pagination(self):
        response = self.api.get(self.list_url(), {"page_size": 1})
        body = response.json()
        assert response.status_code == 200 and len(body["results"]) == 1
        assert set(body) == {"next", "previous", "results"}
        assert_problem(self.api.get(self.list_url(), {"cursor": "not-a-cursor"}), 404)

    def test_unknown_ordering_field_is_ignored_not_a_leak(self):
        response = self.api.get(self.list_url(), {"ordering": "hospital__name"})
        assert response.status_code == 200

    # --- writes ----------------------------------------------------------------------------
    def test_create(self):
        if self.create_scope is None:
            assert_problem(self.post(self.api, self.list_url(), {}), 405)
            return
        response = self.post(self.api, self.list_url(), self.create_payload(self.a))
        assert response.status_code == 201, response.content
        assert self.audit_rows(self.create_audit_action)

    def test_create_needs_the_scope(self):
        if self.create_scope is None:
            return
        body = assert_problem(self.post(self.api_read, self.list_url(), self.create_payload(self.a)), 403)
        assert self.create_scope in body["detail"]

    def test_foreign_ids_in_the_body_are_refused(self):
        for field, foreign_of in self.foreign_fields.items():
            payload = {**self.create_payload(self.a), field: foreign_of(self.b).pk}
            body = assert_problem(self.post(self.api, self.list_url(), payload), 400)
            assert field in body["errors"], body

    def test_hospital_in_the_body_is_ignored(self):
        if self.create_scope is None:
            return
        payload = {**self.create_payload(self.a), "hospital": self.b.hospital.pk}
        response = self.post(self.api, self.list_url(), payload)
        assert response.status_code == 201, response.content
        model = type(self.object_of(self.a))
        with scopes_disabled():
            created = model.objects.get(pk=response.json()["id"])
        assert created.hospital_id == self.a.hospital.pk
