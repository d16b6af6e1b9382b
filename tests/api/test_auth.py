"""Partner-client authentication and the hospital binding of hospitals.api.base."""

import pytest
from django_scopes import scope, scopes_disabled
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from hospitals.api.services import partner_client_revoke
from hospitals.models import AuditEvent

from .conftest import fetch_token

pytestmark = pytest.mark.django_db


def test_token_and_hospital_endpoint(hospital_a, make_partner):
    new, api = make_partner(hospital_a, scopes=["read"])
    response = api.get("/api/v1/hospitals/alpha/")
    assert response.status_code == 200
    assert response.json()["credential"] == {"kind": "client", "name": "Lab system", "scopes": ["read"], "role": None}
    assert "no-store" in response["Cache-Control"]


def test_token_scopes_are_limited_to_the_clients(hospital_a, make_partner):
    new, _ = make_partner(hospital_a, scopes=["read"])
    refused = fetch_token(new.client_id, new.client_secret, "read write")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"
    default = fetch_token(new.client_id, new.client_secret)
    assert default.json()["scope"] == "read"


def test_wrong_secret_gets_no_token(hospital_a, make_partner):
    new, _ = make_partner(hospital_a)
    assert fetch_token(new.client_id, "not-the-secret").status_code == 401


def test_other_hospitals_slug_is_404_like_a_missing_one(hospital_a, hospital_b, make_partner):
    _, api = make_partner(hospital_a)
    foreign, missing = api.get("/api/v1/hospitals/beta/"), api.get("/api/v1/hospitals/nope/")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    assert foreign["Content-Type"] == "application/problem+json"


def test_no_credential_is_401_with_bearer_challenge(hospital_a):
    response = APIClient().get("/api/v1/hospitals/alpha/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["instance"] == "/api/v1/hospitals/alpha/"
    assert set(body) >= {"type", "title", "status", "detail", "instance"}


def test_bad_token_is_401(hospital_a):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    assert api.get("/api/v1/hospitals/alpha/").status_code == 401


def test_revoking_deletes_tokens_and_refuses_new_ones(hospital_a, make_partner, make_member):
    from hospitals.models import Role

    new, api = make_partner(hospital_a)
    admin = make_member(hospital_a, Role.HOSPITAL_ADMIN)
    with scope(hospital=hospital_a):
        partner_client_revoke(client=new.client, actor=admin)
    with scopes_disabled():
        assert not AccessToken.objects.filter(application=new.client.application).exists()
        assert AuditEvent.objects.filter(object_type="partner_client", action="update").exists()
    assert api.get("/api/v1/hospitals/alpha/").status_code == 401
    assert fetch_token(new.client_id, new.client_secret).status_code == 401


def test_session_user_needs_active_membership(hospital_a, hospital_b, make_member):
    user = make_member(hospital_a)
    api = APIClient()
    api.force_login(user)
    ok = api.get("/api/v1/hospitals/alpha/")
    assert ok.status_code == 200 and ok.json()["credential"]["kind"] == "session"
    assert api.get("/api/v1/hospitals/beta/").status_code == 404


def test_unknown_api_url_is_a_problem(hospital_a, make_partner):
    _, api = make_partner(hospital_a)
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
