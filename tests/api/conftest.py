"""Fixtures of the API tests: partner clients with real tokens from /o/token/, and a
fresh throttle cache per test (rates are counted per client id, user id and hospital id,
which the next test's rows may reuse)."""

import base64
import uuid

import pytest
from django_scopes import scope
from rest_framework.test import APIClient

from hospitals.api.services import partner_client_create


@pytest.fixture(autouse=True)
def _throttle_cache(settings):
    settings.CACHES = {**settings.CACHES, "api-throttle": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"throttle-{uuid.uuid4().hex}"}}
    settings.API_THROTTLE_CACHE = "api-throttle"


def fetch_token(client_id: str, secret: str, scope_: str | None = None):
    """POST /o/token/ with HTTP Basic client authentication, as a partner would."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if scope_ is not None:
        data["scope"] = scope_
    return APIClient().post("/o/token/", data, format="multipart", HTTP_AUTHORIZATION=f"Basic {basic}")


@pytest.fixture
def make_partner(db):
    """make_partner(hospital, scopes=[...], token_scope=None) -> (NewClient, APIClient with
    a bearer token). The token is requested for `token_scope` (default: all allowed)."""
    from tests.factories import UserFactory

    def make(hospital, scopes=("read", "write", "screening:upload"), token_scope=None, name="Lab system"):
        admin = UserFactory()
        with scope(hospital=hospital):
            new = partner_client_create(hospital=hospital, name=name, scopes=list(scopes), actor=admin)
        response = fetch_token(new.client_id, new.client_secret, token_scope)
        assert response.status_code == 200, response.content
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
        api.token = response.json()["access_token"]
        return new, api

    return make
