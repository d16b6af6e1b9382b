"""Access-control rows built from the URL resolver and the models, with the worlds of
tests/test_isolation.py (hospital A and B with every kind of object):

- A5: every model with a hospital foreign key has a django-scopes manager: outside a scope
  its queries raise; inside A's scope they return A's rows only.
- A7: every route, requested anonymously and with an invalid bearer token, by GET and
  POST, is refused (sign-in redirect, 401, 403, 404, 405) unless it is a reviewed public
  page, and never shows A's data.
- A8: every portal route that checks a POLICY action, for each of the five roles: 403
  exactly for the roles the POLICY table leaves out.
- A9: a hospital named by a header or a query parameter is never honoured.
"""

import re

import pytest
from django.apps import apps
from django.test import Client
from django.urls import resolve, reverse
from django_scopes import scope, scopes_disabled
from django_scopes.exceptions import ScopeError

from hospitals.models import Hospital, Role
from hospitals.permissions import POLICY

from ..test_isolation import PORTAL_OBJECT_ROUTES, walk

# Models with a hospital key that are not scoped, reviewed: simple-history's tables are read
# only as `obj.history` of an object found in scope and through the tenant-limited history
# admin (TenantHistoryAdminMixin, tested in tests/test_isolation.py).
UNSCOPED_OK = {"patients.HistoricalPatient", "patients.HistoricalLabTest"}


def tenant_models():
    return [m for m in apps.get_models()
            if any(f.is_relation and f.related_model is Hospital for f in m._meta.fields)]


def test_every_tenant_model_is_scoped(worlds, figure):
    a, _ = worlds
    unscoped = []
    models = tenant_models()
    for model in models:
        label = model._meta.label
        if label in UNSCOPED_OK:
            continue
        with scopes_disabled():
            own = model._base_manager.filter(hospital=a.hospital).count()
        try:
            list(model._default_manager.all()[:1])
        except ScopeError:
            pass
        else:
            unscoped.append(f"{label}: a query outside any scope ran")
            continue
        with scope(hospital=a.hospital):
            seen = model._default_manager.count()
            foreign = model._default_manager.exclude(hospital=a.hospital).count()
        if foreign or seen != own:
            unscoped.append(f"{label}: {seen} rows in A's scope, {own} of A's, {foreign} of others")
    assert not unscoped, "\n".join(unscoped)
    assert len(models) >= 13
    figure("A5", f"tenant models M={len(models)}; unscoped managers 0 ({len(UNSCOPED_OK)} history tables reviewed)",
           tenant_models=len(models), unscoped=0)


# --- A7 ---------------------------------------------------------------------------------------------
# Pages meant for people who are not signed in, or that only redirect to them.
PUBLIC = {
    "", "accounts/", "api/v1/schema/", "api/v1/docs/", "api/v1/redoc/", "o/token/", "o/revoke_token/",
    "admin/logout/",  # signing out needs no credentials
}
PUBLIC_PREFIXES = ("accounts/",)


def concrete(route: str, values: dict) -> str:
    """A URL for a resolver route: converters and named groups filled with A's values."""
    route = route.replace("^", "").replace("$", "").replace("\\.", ".").replace("\\Z", "")

    def group(match):
        name, pattern = match.group(1), match.group(2)
        if name in values:
            return str(values[name])
        if re.fullmatch(r"[\w|]+", pattern):
            return pattern.split("|")[0]
        return "1"

    route = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", group, route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), 1)), route)
    return "/" + route


def refused(response) -> bool:
    if response.status_code in (401, 403, 404, 405):
        return True
    location = response.get("Location", "")
    return response.status_code == 302 and ("/accounts/login/" in location or location.startswith("/admin/login/"))


def test_nothing_opens_without_valid_credentials(worlds, figure):
    a, _ = worlds
    values = {"hospital_slug": a.hospital.slug, "pk": a.patient.pk, "patient_pk": a.patient.pk,
              "object_id": a.patient.pk, "id": a.patient.pk}
    clients = {"anonymous": Client(), "invalid token": Client(HTTP_AUTHORIZATION="Bearer not-a-real-token")}
    accepted, operations, routes = [], 0, 0
    for route, name in walk():
        public = route in PUBLIC or route.startswith(PUBLIC_PREFIXES)
        url = concrete(route, values)
        resolve(url)  # every route turned into a URL that reaches it
        routes += 1
        for who, client in clients.items():
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                operations += 1
                body = response.content.decode(errors="replace") if not response.streaming else ""
                if not public and not refused(response):
                    accepted.append(f"{who} {method.upper()} {url}: {response.status_code}")
                leaked = [s for s in a.secrets if s in body]
                if leaked:
                    accepted.append(f"{who} {method.upper()} {url}: body holds {leaked}")
    assert not accepted, "\n".join(accepted)
    figure("A7", f"operations O={operations} ({routes} routes x anonymous/invalid token x GET/POST); "
           "accepted without/with invalid auth 0", operations=operations, accepted=0)


# --- A8 ---------------------------------------------------------------------------------------------
def policy_action(view) -> str | None:
    """The POLICY action a portal view checks (hospitals.decorators.require_action)."""
    while view is not None:
        for cell in getattr(view, "__closure__", None) or ():
            if isinstance(cell.cell_contents, str) and cell.cell_contents in POLICY:
                return cell.cell_contents
        view = getattr(view, "__wrapped__", None)
    return None


@pytest.fixture
def members_of_a(worlds, make_member):
    a, _ = worlds
    users = {Role.HOSPITAL_ADMIN: a.admin, Role.CLINICIAN: a.clinician}
    for role in (Role.RADIOLOGIST, Role.REGISTRAR, Role.VIEWER):
        users[role] = make_member(a.hospital, role)
    clients = {}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    return clients


def test_role_action_matrix_follows_the_policy(worlds, members_of_a, figure):
    a, _ = worlds
    checked, mismatches, unchecked = 0, [], []
    for route, name in walk():
        if not route.startswith("h/<slug:hospital_slug>/") or name is None:
            continue
        action = policy_action(resolve(concrete(route, {"hospital_slug": "alpha", "pk": 1, "patient_pk": 1})).func)
        if action is None:
            unchecked.append(name)
            continue
        maker = PORTAL_OBJECT_ROUTES.get(name)
        object_id = maker(a) if maker else 1
        url = concrete(route, {"hospital_slug": a.hospital.slug, "pk": object_id, "patient_pk": object_id})
        for role, client in members_of_a.items():
            allowed = role in POLICY[action]
            response = client.get(url)
            if response.status_code == 405 and not allowed:
                response = client.post(url, {})
            checked += 1
            if allowed and response.status_code == 403:
                mismatches.append(f"{role} {name} ({action}): 403, the policy allows it")
            if not allowed and response.status_code != 403:
                mismatches.append(f"{role} {name} ({action}): {response.status_code}, the policy refuses it")
    assert not mismatches, "\n".join(mismatches)
    # Portal routes without a POLICY check: the dashboard-like pages every member may see.
    assert set(unchecked) <= {"hospitals:dashboard"}, unchecked
    figure("A8", f"role-action pairs P={checked} (portal routes x 5 roles, from hospitals.permissions.POLICY); "
           "mismatches vs policy 0", pairs=checked, mismatches=0)


# --- A9 ---------------------------------------------------------------------------------------------
def test_a_hospital_named_by_header_or_parameter_is_ignored(worlds, figure):
    a, b = worlds
    client = Client()
    client.force_login(b.clinician)
    spoofs = [
        {"HTTP_X_HOSPITAL": a.hospital.slug}, {"HTTP_X_HOSPITAL_ID": str(a.hospital.pk)},
        {"HTTP_X_TENANT": a.hospital.slug}, {"HTTP_HOST": f"{a.hospital.slug}.testserver"},
    ]
    params = [f"hospital={a.hospital.slug}", f"hospital={a.hospital.pk}", f"hospital_id={a.hospital.pk}",
              f"hospital_slug={a.hospital.slug}", f"tenant={a.hospital.slug}"]
    pages = [reverse("patients:list", kwargs={"hospital_slug": "beta"}),
             reverse("hospitals:dashboard", kwargs={"hospital_slug": "beta"}),
             reverse("api:patient-list", kwargs={"hospital_slug": "beta"}),
             "/fhir/beta/Patient", "/"]
    attempts, honoured = 0, []
    for page in pages:
        for headers in spoofs:
            for param in ["", *params]:
                url = f"{page}?{param}" if param else page
                response = client.get(url, **headers)
                attempts += 1
                body = response.content.decode(errors="replace")
                if response.status_code == 200 and any(s in body for s in a.secrets):
                    honoured.append(f"{url} {headers}")
        # B's own data still answers (the probe reaches the pages).
        assert client.get(page).status_code in (200, 302)
    assert b.patient.family_name in client.get(pages[0] + f"?hospital={a.hospital.slug}").content.decode()
    assert not honoured, honoured
    figure("A9", f"spoof attempts N={attempts} (X-Hospital/X-Tenant/Host headers x ?hospital= parameters); "
           "honoured 0", attempts=attempts, honoured=0)
