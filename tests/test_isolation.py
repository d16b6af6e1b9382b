"""THE isolation matrix: members of hospital B request every portal route and every
admin route that takes an object id or a hospital slug, with hospital A's ids and slug,
by GET and POST. Each answer must be indistinguishable from the one for an id or slug
that does not exist (404 wherever the request reaches a tenant object; a role or
platform-only refusal is 403 for the missing id too) and must not contain any of A's
identifiers. A meta-test walks every URL pattern and fails when a route that takes an
id or slug is neither in the matrix nor in the reviewed allow-list below.

`pytest -s tests/test_isolation.py` prints: cross-tenant reads attempted: N; leaks 0."""

import json
import re
from dataclasses import dataclass, field

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from urllib.parse import quote

from django_scopes import scope

from hospitals.api.services import partner_client_create
from hospitals.audit import chain_name

from hospitals.models import AuditEvent, Hospital, Membership, PartnerClient, User
from patients.models import LabTest, Patient, StatusChange
from screening.models import AiResult, Review, Scan, Screening
from webhooks.models import Attempt, Delivery, Endpoint

from .factories import add_screening, add_webhook, hospital_world

MISSING = 987654321
NO_SUCH_SLUG = "does-not-exist"

# Routes that take a parameter but no tenant object, reviewed one by one.
ALLOW_LIST = {
    "admin/(?P<app_label>hospitals|auth|account|mfa|usersessions|patients|screening|webhooks)/$":
        "admin app index: an app label, lists only the models the user may see (tested in test_admin)",
    "admin/(?P<url>.*)$": "admin catch-all: redirects unknown admin paths to the login or answers 404",
    "accounts/confirm-email/(?P<key>[-:\\w]+)/$": "allauth email confirmation: a signed key, no hospital",
    "accounts/password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$":
        "allauth password reset: a signed key, no hospital",
}

# Portal routes that take an object id, and the object of a hospital world they take.
PORTAL_OBJECT_ROUTES = {
    "patients:detail": lambda w: w.patient.pk,
    "patients:edit": lambda w: w.patient.pk,
    "patients:change_status": lambda w: w.patient.pk,
    "patients:labtest_create": lambda w: w.patient.pk,
    "hospitals:member_edit": lambda w: w.clinician_membership.pk,
    "hospitals:api_client_revoke": lambda w: w.partner_client.pk,
    "screening:upload": lambda w: w.patient.pk,
    "screening:detail": lambda w: w.screening.pk,
    "screening:status": lambda w: w.screening.pk,
    "screening:review": lambda w: w.screening.pk,
    "screening:apply_status": lambda w: w.screening.pk,
    "screening:scan_original": lambda w: w.scan.pk,
    "screening:scan_preview": lambda w: w.scan.pk,
    "screening:heatmap": lambda w: w.result.pk,
    "webhooks:edit": lambda w: w.endpoint.pk,
    "webhooks:rotate_secret": lambda w: w.endpoint.pk,
    "webhooks:deliveries": lambda w: w.endpoint.pk,
    "webhooks:delivery": lambda w: w.delivery.pk,
    "webhooks:replay": lambda w: w.delivery.pk,
}
# The URL keyword of the object id, where it is not `pk`.
PORTAL_ID_KWARG = {"screening:upload": "patient_pk"}
PORTAL_POST = {
    "patients:edit": {"mrn": "X", "given_name": "X", "family_name": "X", "sex": "female", "birth_date": "1990-01-01"},
    "patients:change_status": {"to_status": "infected", "effective_date": "2020-01-01", "reason": "probe"},
    "patients:labtest_create": {"test_type": "rt_pcr", "result": "negative", "sample_date": "2020-01-01"},
    "hospitals:member_edit": {"role": "viewer", "action": "deactivate"},
    "hospitals:api_client_revoke": {},
    "screening:upload": {"files": ""},
    "screening:review": {"decision": "override", "clinical_label": "normal", "radiological_signs": "no",
                         "reason": "probe"},
    "screening:apply_status": {"effective_date": "2020-01-01", "note": "probe"},
    "webhooks:create": {"url": "https://probe.example/", "events": ["review.recorded"], "is_active": "on"},
    "webhooks:edit": {"url": "https://probe.example/", "events": ["review.recorded"], "is_active": "on"},
}


# Other URL keywords of a route (not an object id).
PORTAL_FIXED_KWARGS = {"hospitals:export_csv": {"what": "patients"}}


def portal_kwargs(name, pk) -> dict:
    return {PORTAL_ID_KWARG.get(name, "pk"): pk}


def portal_url(name, slug, pk=None) -> str:
    return reverse(name, kwargs={"hospital_slug": slug, **PORTAL_FIXED_KWARGS.get(name, {}),
                                 **(portal_kwargs(name, pk) if pk is not None else {})})


def walk(patterns=None, prefix="", namespace=""):
    """(route, 'namespace:name') of every URL pattern, routes joined like ResolverMatch.route."""
    for p in get_resolver().url_patterns if patterns is None else patterns:
        route = URLResolver._join_route(prefix, str(p.pattern)) if prefix else str(p.pattern)
        if isinstance(p, URLResolver):
            ns = f"{namespace}:{p.namespace}".strip(":") if p.namespace else namespace
            yield from walk(p.url_patterns, route, ns)
        elif isinstance(p, URLPattern):
            yield route, f"{namespace}:{p.name}".strip(":") if p.name else None


def takes_parameter(route: str) -> bool:
    return "<" in route or "(" in route


@dataclass
class Probe:
    """One cross-tenant request and the request it must be indistinguishable from."""

    method: str
    url: str
    control: str | None  # the same request for something that does not exist
    attacker: str  # "admin" or "clinician" of hospital B
    data: dict = field(default_factory=dict)
    exact_404: bool = True  # reaches a tenant object: must be exactly 404
    json_results: bool = False  # autocomplete: results must be empty
    term: str | None = None  # a search term, echoed back in the page's search box


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a = hospital_world(hospital_a, tag="ALPHA")
    b = hospital_world(hospital_b, tag="BETA")
    add_screening(a, tag="ALPHA")
    add_screening(b, tag="BETA")
    add_webhook(a, tag="ALPHA")
    add_webhook(b, tag="BETA")
    for world in (a, b):
        with scope(hospital=world.hospital):
            world.partner_client = partner_client_create(hospital=world.hospital, name="Lab system",
                                                         scopes=["read"], actor=world.admin).client
    with scope(hospital=hospital_a):
        a.labtest_history_id = a.lab_test.history.order_by("-history_id").first().history_id
    with scope(hospital=hospital_b):
        b.labtest_history_id = b.lab_test.history.order_by("-history_id").first().history_id
    # Platform rows that belong to A's people (their admins are superuser-only).
    a.platform = {
        EmailAddress: EmailAddress.objects.get(user=a.clinician),
        UserSession: UserSession.objects.create(user=a.clinician, session_key="alpha-session-key", ip="10.0.0.1",
                                                user_agent="probe"),
        Authenticator: Authenticator.objects.create(user=a.clinician, type=Authenticator.Type.RECOVERY_CODES,
                                                    data={"seed": "00"}),
        Group: Group.objects.create(name="alpha-group"),
    }
    a.secrets += [a.hospital.name, a.clinician.email, a.admin.email]
    return a, b


def tenant_object(world, model):
    objects = {
        Hospital: world.hospital, User: world.clinician, Membership: world.clinician_membership,
        AuditEvent: world.audit_event, Patient: world.patient, LabTest: world.lab_test,
        StatusChange: world.status_change, Scan: world.scan, Screening: world.screening, AiResult: world.result,
        Review: world.review, Endpoint: world.endpoint, Delivery: world.delivery, Attempt: world.attempt,
        **getattr(world, "platform", {}),
    }
    assert model in objects, f"{model._meta.label} has an admin: add one of A's objects to the isolation matrix"
    return objects[model]


def history_id(world, model):
    return {Patient: world.history_id, LabTest: world.labtest_history_id}[model]


def admin_url(pattern, model, obj_id, world) -> str:
    """The URL of one of a ModelAdmin's patterns for `obj_id`."""
    opts = model._meta
    if pattern.name is None:  # Django's bare "<id>/" that redirects to the change view
        return f"/admin/{opts.app_label}/{opts.model_name}/{obj_id}/"
    if pattern.name.endswith("_simple_history"):
        hid = history_id(world, model) if obj_id != MISSING else MISSING
        return reverse(f"admin:{pattern.name}", args=[obj_id, hid])
    return reverse(f"admin:{pattern.name}", args=[obj_id])


def build_matrix(a, b) -> list[Probe]:
    probes: list[Probe] = []
    # Portal, by id under the attacker's own hospital, and by slug under A's and a missing one.
    for route, name in walk():
        if not route.startswith("h/<slug:hospital_slug>/"):
            continue
        makes_id = PORTAL_OBJECT_ROUTES.get(name)
        for method in ("GET", "POST"):
            data = PORTAL_POST.get(name, {})
            for attacker in ("admin", "clinician"):
                if makes_id is not None:
                    probes.append(Probe(
                        method, portal_url(name, b.hospital.slug, makes_id(a)),
                        portal_url(name, b.hospital.slug, MISSING), attacker, data, exact_404=False,
                    ))
                probes.append(Probe(
                    method, portal_url(name, a.hospital.slug, makes_id(a) if makes_id else None),
                    portal_url(name, NO_SUCH_SLUG, makes_id(a) if makes_id else None), attacker, data,
                ))
                if makes_id:  # B's own id under A's slug
                    probes.append(Probe(
                        method, portal_url(name, a.hospital.slug, makes_id(b)),
                        portal_url(name, NO_SUCH_SLUG, makes_id(b)), attacker, data,
                    ))
    # Admin: every pattern of every registered ModelAdmin that takes an id, with A's ids.
    for model, model_admin in admin.site._registry.items():
        obj = tenant_object(a, model)
        for pattern in model_admin.get_urls():
            if not takes_parameter(str(pattern.pattern)):
                continue
            for method in ("GET", "POST"):
                for attacker in ("admin", "clinician"):
                    probes.append(Probe(
                        method, admin_url(pattern, model, obj.pk, a), admin_url(pattern, model, MISSING, a),
                        attacker, {"post": "yes"}, exact_404=False,
                    ))
        content_type = ContentType.objects.get_for_model(model)
        for attacker in ("admin", "clinician"):
            probes.append(Probe("GET", reverse("admin:view_on_site", args=[content_type.pk, obj.pk]),
                                reverse("admin:view_on_site", args=[content_type.pk, MISSING]), attacker,
                                exact_404=False))
    # Admin autocomplete of every relation offered with it, searched for A's identifiers.
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.autocomplete_fields:
            for term in a.secrets:
                url = (f"/admin/autocomplete/?app_label={model._meta.app_label}&model_name={model._meta.model_name}"
                       f"&field_name={field_name}&term={quote(term)}")
                probes.append(Probe("GET", url, None, "admin", json_results=True, term=term))
    # Portal search and the audit export of B's own hospital, fed A's identifiers.
    for term in a.secrets:
        probes.append(Probe("GET", reverse("patients:list", kwargs={"hospital_slug": b.hospital.slug})
                            + f"?q={quote(term)}", None, "admin", term=term))
    probes.append(Probe("GET", reverse("hospitals:audit_export", kwargs={"hospital_slug": b.hospital.slug}), None,
                        "admin"))
    for what in ("patients", "screenings"):  # B's own exports hold none of A's rows
        probes.append(Probe("GET", reverse("hospitals:export_csv", kwargs={"hospital_slug": b.hospital.slug,
                                                                           "what": what}), None, "admin"))
    return probes


def tenant_snapshot(hospital) -> str:
    """A hash of every row of every model with a hospital key, of one hospital: a write that
    reached any of them changes it."""
    import hashlib

    from django.apps import apps
    from django_scopes import scopes_disabled

    digest = hashlib.sha256()
    with scopes_disabled():
        for model in sorted(apps.get_models(), key=lambda m: m._meta.label):
            if any(f.is_relation and f.related_model is Hospital for f in model._meta.fields):
                rows = model._base_manager.filter(hospital=hospital).order_by("pk").values()
                digest.update(f"{model._meta.label}{list(rows)!r}".encode())
    return digest.hexdigest()


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def send(client, probe_method, url, data):
    if probe_method == "GET":
        return client.get(url, follow=True)
    return client.post(url, data, follow=True)


# The kinds of tenant objects the matrix aims at (portal objects and every admin model).
OBJECT_TYPES = {Hospital, User, Membership, AuditEvent, Patient, LabTest, StatusChange, Scan, Screening, AiResult,
                Review, Endpoint, Delivery, Attempt, PartnerClient}


def test_cross_tenant_matrix(worlds, figure):
    a, b = worlds
    clients = {}
    for role, user in (("admin", b.admin), ("clinician", b.clinician)):
        clients[role] = Client()
        clients[role].force_login(user)
    probes = build_matrix(a, b)
    leaks: list[str] = []
    a_chain = chain_name(a.hospital.pk)
    before = tenant_snapshot(a.hospital)
    for probe in probes:
        client = clients[probe.attacker]
        response = send(client, probe.method, probe.url, probe.data)
        body = body_of(response)
        where = f"{probe.attacker} {probe.method} {probe.url}"
        if probe.control is not None:
            control = send(client, probe.method, probe.control, probe.data)
            if response.status_code != control.status_code:
                leaks.append(f"{where}: {response.status_code}, but {control.status_code} for a missing one")
            if response.status_code not in (403, 404):
                leaks.append(f"{where}: {response.status_code}")
            if probe.exact_404 and response.status_code != 404:
                leaks.append(f"{where}: {response.status_code}, expected 404")
        elif response.status_code != 200:
            leaks.append(f"{where}: {response.status_code} for a search of B's own data")
        if probe.json_results and json.loads(body)["results"]:
            leaks.append(f"{where}: autocomplete returned {json.loads(body)['results']}")
        for secret in a.secrets:
            if secret != probe.term and secret in body:
                leaks.append(f"{where}: body contains {secret!r}")
        if "/audit/export" in probe.url and re.search(rf"(^|,){a_chain}(,|$)", body, re.MULTILINE):
            leaks.append(f"{where}: the export holds entries of A's audit chain")
    # Each object route reached a 404 for at least one attacker (not only role refusals).
    by_route = {}
    for probe in probes:
        if probe.control is not None:
            by_route.setdefault(resolve(probe.url.split("?")[0]).route, set()).add(probe.attacker)
    routes = {resolve(p.url.split("?")[0]).route for p in probes}
    writes = [p for p in probes if p.method == "POST"]
    changed = tenant_snapshot(a.hospital) != before
    types = len(OBJECT_TYPES | set(a.platform))
    figure("A1 portal+admin", f"cross-tenant reads attempted: {len(routes)} routes x {types} object types "
           f"x 2 roles = {len(probes)} requests; leaks {len(leaks)}", routes=len(routes),
           object_types=types, roles=2, requests=len(probes), leaks=len(leaks))
    figure("A2 portal+admin", f"cross-tenant writes attempted: {len(writes)} (POST to every portal and admin route "
           f"with A's ids, B's roles); rows of A changed {int(changed)}", writes=len(writes), changed=int(changed))
    admin_probes = [p for p in probes if p.url.startswith("/admin/")]
    figure("A6", f"ModelAdmins {len(admin.site._registry)} x surfaces (change, history, delete, bare id, "
           f"view-on-site, autocomplete, search) checked in {len(admin_probes)} requests; "
           "other hospital's objects visible "
           f"{sum(1 for leak in leaks if '/admin/' in leak)}", model_admins=len(admin.site._registry),
           requests=len(admin_probes))
    assert not leaks, "\n".join(leaks)
    assert not changed, "a cross-tenant request changed hospital A's rows"
    assert len(probes) > 300


def test_object_routes_answer_404_to_an_allowed_attacker(worlds):
    """The matrix above accepts 403 where it equals the missing-id answer. Here each portal
    object route is requested by a B member whose role may use it: the answer is 404."""
    a, b = worlds
    allowed = {"patients:detail": b.clinician, "patients:edit": b.admin, "patients:change_status": b.clinician,
               "patients:labtest_create": b.clinician, "hospitals:member_edit": b.admin,
               "hospitals:api_client_revoke": b.admin,
               **{name: b.clinician for name in PORTAL_OBJECT_ROUTES if name.startswith("screening:")},
               **{name: b.admin for name in PORTAL_OBJECT_ROUTES if name.startswith("webhooks:")}}
    assert set(allowed) == set(PORTAL_OBJECT_ROUTES)
    for name, user in allowed.items():
        client = Client()
        client.force_login(user)
        own = portal_url(name, "beta", PORTAL_OBJECT_ROUTES[name](b))
        # The route works for B's own object (POST-only routes send a GET back to the page).
        assert client.get(own, follow=True).status_code == 200, own
        foreign = portal_url(name, "beta", PORTAL_OBJECT_ROUTES[name](a))
        assert client.get(foreign).status_code == 404, foreign
        assert client.post(foreign, PORTAL_POST.get(name, {})).status_code == 404, foreign
    # Admin: B's hospital admin may view every tenant model, so A's ids are 404 (not 403).
    client = Client()
    client.force_login(b.admin)
    for model in (Hospital, User, Membership, AuditEvent, Patient, LabTest, StatusChange, Scan, Screening, AiResult,
                  Review, Endpoint, Delivery, Attempt):
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert client.get(reverse(f"{info}_change", args=[tenant_object(b, model).pk])).status_code == 200
        for view in ("change", "history", "delete"):
            url = reverse(f"{info}_{view}", args=[tenant_object(a, model).pk])
            assert client.get(url).status_code == 404, url
            assert client.post(url, {"post": "yes"}).status_code == 404, url


def without_csrf(response) -> str:
    """The page without its CSRF token (masked differently in every response)."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_a_hospital_that_does_not_exist_and_one_you_are_not_in_look_the_same(worlds):
    a, b = worlds
    client = Client()
    client.force_login(b.clinician)
    for path in ("", "patients/", f"patients/{a.patient.pk}/", "members/", "audit/", "screenings/",
                 f"screenings/{a.screening.pk}/", f"scans/{a.scan.pk}/original", f"results/{a.result.pk}/heatmap",
                 "webhooks/", f"webhooks/{a.endpoint.pk}/", f"webhooks/deliveries/{a.delivery.pk}/"):
        foreign, missing = client.get(f"/h/alpha/{path}"), client.get(f"/h/{NO_SUCH_SLUG}/{path}")
        assert foreign.status_code == missing.status_code == 404
        assert without_csrf(foreign) == without_csrf(missing)


def test_every_route_with_an_id_or_slug_is_in_the_matrix(worlds, figure):
    a, b = worlds
    covered = {resolve(probe.url.split("?")[0]).route for probe in build_matrix(a, b)}
    # API routes have their own table (tests/api/test_isolation_api.py, which fails on a missing route).
    from .api.test_isolation_api import API_ROUTES, api_routes_below_a_hospital

    covered |= {route for route, name in api_routes_below_a_hospital().items() if name in API_ROUTES}
    # So do the FHIR routes (tests/fhir_facade/test_access.py).
    from .fhir_facade.test_access import FHIR_ROUTES, fhir_routes_below_a_hospital

    covered |= {route for route, name in fhir_routes_below_a_hospital().items() if name in FHIR_ROUTES}
    routes = {route for route, _ in walk() if takes_parameter(route)}
    missing = sorted(routes - covered - set(ALLOW_LIST))
    assert not missing, f"routes taking an id or slug are missing from the isolation matrix: {missing}"
    stale = sorted(set(ALLOW_LIST) - routes)
    assert not stale, f"allow-list entries that no longer exist: {stale}"
    figure("A4", f"routes enumerated R={len(routes)} (taking an id or slug: URL resolver, API, FHIR, every "
           f"ModelAdmin); covered {len(routes & covered)}; allow-listed {len(routes & set(ALLOW_LIST))} (reviewed); "
           f"uncovered {len(missing)}", routes=len(routes), covered=len(routes & covered),
           allow_listed=len(routes & set(ALLOW_LIST)), uncovered=len(missing))
    # Every registered ModelAdmin took part, tenant and platform-only ones alike.
    assert {m for m in admin.site._registry} <= {Hospital, User, Membership, AuditEvent, Patient, LabTest,
                                                  StatusChange, Scan, Screening, AiResult, Review, Endpoint,
                                                  Delivery, Attempt, *a.platform}
