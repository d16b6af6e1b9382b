"""Hospital admins create and revoke partner clients in the portal; the secret is shown
once and works at the token endpoint."""

import re

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.models import PartnerClient, Role

from .conftest import fetch_token

pytestmark = pytest.mark.django_db


def test_admin_creates_a_client_and_sees_the_secret_once(hospital_a, make_member, client):
    admin = make_member(hospital_a, Role.HOSPITAL_ADMIN)
    client.force_login(admin)
    url = reverse("hospitals:api_client_create", kwargs={"hospital_slug": "alpha"})
    response = client.post(url, {"name": "City lab", "scopes": ["read", "screening:upload"]})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    client_id = re.search(r'id="client-id">([^<]+)<', html).group(1)
    secret = re.search(r'id="client-secret">([^<]+)<', html).group(1)
    with scopes_disabled():
        partner = PartnerClient.objects.get(name="City lab")
        assert partner.application.client_secret != secret, "only a hash is stored"
        assert partner.created_by == admin and partner.scope_list == ["read", "screening:upload"]
    token = fetch_token(client_id, secret)
    assert token.status_code == 200 and set(token.json()["scope"].split()) == {"read", "screening:upload"}
    listing = client.get(reverse("hospitals:api_clients", kwargs={"hospital_slug": "alpha"}))
    assert "City lab" in listing.content.decode() and secret not in listing.content.decode()


def test_admin_revokes_a_client(hospital_a, make_member, make_partner, client):
    new, api = make_partner(hospital_a)
    client.force_login(make_member(hospital_a, Role.HOSPITAL_ADMIN))
    url = reverse("hospitals:api_client_revoke", kwargs={"hospital_slug": "alpha", "pk": new.client.pk})
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 302
    assert api.get("/api/v1/hospitals/alpha/").status_code == 401


def test_only_hospital_admins_manage_clients(hospital_a, make_member, client):
    client.force_login(make_member(hospital_a, Role.CLINICIAN))
    for name in ("hospitals:api_clients", "hospitals:api_client_create"):
        assert client.get(reverse(name, kwargs={"hospital_slug": "alpha"})).status_code == 403


def test_unknown_scope_is_refused(hospital_a, make_member, client):
    client.force_login(make_member(hospital_a, Role.HOSPITAL_ADMIN))
    url = reverse("hospitals:api_client_create", kwargs={"hospital_slug": "alpha"})
    response = client.post(url, {"name": "X", "scopes": ["admin"]})
    assert response.status_code == 200 and "client-secret" not in response.content.decode()
    with scopes_disabled():
        assert not PartnerClient.objects.exists()
