"""API isolation table (like tests/test_isolation.py for the portal): hospital A's partner
token and A's portal user are sent to every API route with hospital B's slug and ids, by
every method. Each answer is 404 problem details, identical to the answer for a missing
id, and never carries B's data. A meta-test fails when an API route below a hospital slug
is missing from the table."""

import pytest
from django.urls import resolve, reverse
from rest_framework.test import APIClient

from hospitals.models import Role
from tests.factories import add_screening, hospital_world
from tests.test_isolation import tenant_snapshot, walk

MISSING = 987654321
METHODS = ("get", "post", "put", "patch", "delete")

# URL name -> the object of a hospital world it takes (None: no id).
API_ROUTES = {
    "api:hospital": None,
    "api:patient-list": None,
    "api:patient-detail": lambda w: w.patient,
    "api:patient-history": lambda w: w.patient,
    "api:statuschange-list": None,
    "api:statuschange-detail": lambda w: w.status_change,
    "api:labtest-list": None,
    "api:labtest-detail": lambda w: w.lab_test,
    "api:screening-list": None,
    "api:screening-detail": lambda w: w.screening,
    "api:screening-status": lambda w: w.screening,
    "api:screening-apply-suggestion": lambda w: w.screening,
    "api:airesult-list": None,
    "api:airesult-detail": lambda w: w.result,
    "api:review-list": None,
    "api:review-detail": lambda w: w.review,
}


def api_url(name, slug, pk=None):
    return reverse(name, kwargs={"hospital_slug": slug, **({"pk": pk} if pk is not None else {})})


def api_routes_below_a_hospital() -> dict[str, str]:
    """route -> URL name of every API pattern that takes the hospital slug."""
    return {route: name for route, name in walk() if route.startswith("api/") and "hospital_slug" in route}


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")
    add_screening(a, tag="ALPHA")
    add_screening(b, tag="BETA")
    return a, b


@pytest.fixture
def attackers(worlds, make_partner, make_member):
    """A's partner client (every scope) and A's hospital admin and clinician with sessions."""
    a, _ = worlds
    _, token = make_partner(a.hospital)
    result = {"token": token}
    for role in (Role.HOSPITAL_ADMIN, Role.CLINICIAN):
        api = APIClient()
        api.force_login(make_member(a.hospital, role))
        result[role] = api
    return result


def send(api, method, url):
    return getattr(api, method)(url, {}, format="json")


def test_every_api_route_is_in_the_table():
    names = set(api_routes_below_a_hospital().values())
    assert not names - set(API_ROUTES), f"API routes missing from the isolation table: {sorted(names - set(API_ROUTES))}"
    assert not set(API_ROUTES) - names, f"stale entries: {sorted(set(API_ROUTES) - names)}"


def test_hospital_a_credentials_never_reach_hospital_b(worlds, attackers, figure):
    a, b = worlds
    leaks, probes, writes = [], 0, 0
    before = tenant_snapshot(b.hospital)
    for who, api in attackers.items():
        for name, object_of in API_ROUTES.items():
            for method in METHODS:
                # B's slug (with B's own id where the route takes one): always 404.
                url = api_url(name, "beta", object_of(b).pk if object_of else None)
                response = send(api, method, url)
                probes += 1
                writes += method != "get"
                if response.status_code != 404 or response["Content-Type"] != "application/problem+json":
                    leaks.append(f"{who} {method} {url}: {response.status_code}")
                if object_of is None:
                    continue
                # A's slug with B's id: the same answer as for a missing id, 404 where the method exists.
                url = api_url(name, "alpha", object_of(b).pk)
                response, control = send(api, method, url), send(api, method, api_url(name, "alpha", MISSING))
                probes += 1
                writes += method != "get"
                if response.status_code != control.status_code or response.json() != {
                        **control.json(), "instance": response.json().get("instance")}:
                    leaks.append(f"{who} {method} {url}: {response.status_code} vs {control.status_code}")
                if response.status_code not in (404, 405, 403):
                    leaks.append(f"{who} {method} {url}: {response.status_code}")
                # The partner token holds every scope: each method the route has must reach the lookup.
                if who == "token" and method in resolve(url).func.actions and response.status_code != 404:
                    leaks.append(f"{who} {method} {url}: {response.status_code}, expected 404")
                for secret in b.secrets:
                    if secret in response.content.decode(errors="replace"):
                        leaks.append(f"{who} {method} {url}: body contains {secret!r}")
    changed = tenant_snapshot(b.hospital) != before
    types = len({type(object_of(b)) for object_of in API_ROUTES.values() if object_of})
    figure("A1 api", f"cross-tenant reads attempted: {len(API_ROUTES)} API routes x {types} object types x "
           f"{len(attackers)} credentials (token, admin, clinician) x {len(METHODS)} methods = {probes}; "
           f"leaks {len(leaks)}", routes=len(API_ROUTES), requests=probes, leaks=len(leaks))
    figure("A2 api", f"cross-tenant writes attempted: {writes} (POST/PUT/PATCH/DELETE on B's slug and ids); "
           f"rows of B changed {int(changed)}", writes=writes, changed=int(changed))
    assert not leaks, "\n".join(leaks)
    assert not changed, "a cross-tenant API request changed hospital B's rows"
