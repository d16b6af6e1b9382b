"""Who reaches the FHIR facade: the isolation table (hospital A's token and sessions
against every FHIR route with B's slug and ids: 404 OperationOutcome, identical to a
missing id, none of B's data), scopes and roles (403), no credential (401), portal
sessions, audit rows of reads, the wire format (406, 405, unknown paths)."""

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from rest_framework.test import APIClient

from hospitals.models import AuditEvent, Role
from tests.test_isolation import walk

from .base import FHIR_JSON, MISSING, MISSING_SHA, assert_outcome, fhir_json, ids, read_url, search_url

METHODS = ("get", "post", "put", "patch", "delete")

# URL name -> (the id of a hospital world it takes, or None; the id of nothing).
FHIR_ROUTES = {
    "fhir:metadata": None,
    "fhir:unknown": None,
    **{f"fhir:{t.lower()}-search": None for t in ("Organization", "Patient", "Observation", "DiagnosticReport",
                                                  "ImagingStudy", "Media", "Device", "Condition")},
    "fhir:organization-read": (lambda w: w.hospital.pk, MISSING),
    "fhir:patient-read": (lambda w: w.patient.pk, MISSING),
    "fhir:observation-read": (lambda w: w.result.pk, MISSING),
    "fhir:diagnosticreport-read": (lambda w: w.screening.pk, MISSING),
    "fhir:imagingstudy-read": (lambda w: w.dicom_scan.pk, MISSING),
    "fhir:media-read": (lambda w: w.scan.pk, MISSING),
    "fhir:device-read": (lambda w: w.dicom_result.model_sha256, MISSING_SHA),
    "fhir:condition-read": (lambda w: w.status_change.pk, MISSING),
}


def fhir_routes_below_a_hospital() -> dict[str, str]:
    """route -> URL name of every FHIR pattern (all of them take the hospital slug)."""
    return {route: name for route, name in walk() if route.startswith("fhir/")}


def fhir_url(name, slug, pk=None):
    if name == "fhir:unknown":
        return reverse(name, kwargs={"hospital_slug": slug, "rest": "Encounter/1"})
    return reverse(name, kwargs={"hospital_slug": slug, **({"pk": pk} if pk is not None else {})})


@pytest.fixture
def attackers(worlds, make_partner, make_member):
    """A's partner client (every scope), A's hospital admin and viewer with sessions."""
    a, _ = worlds
    _, token = make_partner(a.hospital)
    result = {"token": token}
    for role in (Role.HOSPITAL_ADMIN, Role.VIEWER):
        api = APIClient()
        api.force_login(make_member(a.hospital, role))
        result[role] = api
    return result


def test_every_fhir_route_is_in_the_table():
    names = set(fhir_routes_below_a_hospital().values())
    assert all("<slug:hospital_slug>" in route for route in fhir_routes_below_a_hospital())
    missing = sorted(names - set(FHIR_ROUTES))
    assert not missing, f"FHIR routes missing from the isolation table: {missing}"
    assert not set(FHIR_ROUTES) - names, f"stale entries: {sorted(set(FHIR_ROUTES) - names)}"


def test_hospital_a_credentials_never_reach_hospital_b(worlds, attackers):
    a, b = worlds
    leaks, probes = [], 0
    for who, api in attackers.items():
        for name, ids_ in FHIR_ROUTES.items():
            for method in METHODS:
                # B's slug (with B's id where the route takes one): 404 OperationOutcome.
                url = fhir_url(name, "beta", ids_[0](b) if ids_ else None)
                response = getattr(api, method)(url)
                probes += 1
                if response.status_code != 404 or response["Content-Type"] != FHIR_JSON:
                    leaks.append(f"{who} {method} {url}: {response.status_code}")
                elif response.json()["issue"][0]["code"] != "not-found":
                    leaks.append(f"{who} {method} {url}: {response.json()}")
                for secret in b.secrets:
                    if secret in response.content.decode(errors="replace"):
                        leaks.append(f"{who} {method} {url}: body contains {secret!r}")
                if ids_ is None or method != "get":
                    continue
                # A's slug with B's id: exactly the answer for an id that does not exist.
                url = fhir_url(name, "alpha", ids_[0](b))
                response, control = api.get(url), api.get(fhir_url(name, "alpha", ids_[1]))
                probes += 1
                if response.status_code != 404 or response.content != control.content:
                    leaks.append(f"{who} GET {url}: {response.status_code} {response.content[:200]!r} "
                                 f"vs {control.status_code} {control.content[:200]!r}")
    print(f"\nFHIR cross-tenant requests: {probes}; leaks {len(leaks)}")
    assert not leaks, "\n".join(leaks)


def test_own_ids_are_read(worlds, attackers):
    """The control of the table above: the same routes with A's own ids answer 200."""
    a, _ = worlds
    for name, ids_ in FHIR_ROUTES.items():
        if name == "fhir:unknown":
            continue
        url = fhir_url(name, "alpha", ids_[0](a) if ids_ else None)
        fhir_json(attackers["token"].get(url))


def test_a_hospital_that_does_not_exist_looks_like_one_you_are_not_in(worlds, attackers):
    api = attackers["token"]
    foreign = api.get(search_url("Patient", "beta"))
    missing = api.get(search_url("Patient", "no-such-hospital"))
    assert assert_outcome(foreign, 404) == assert_outcome(missing, 404)


# --- credentials and scopes --------------------------------------------------------------------------

def test_no_credential_is_401(worlds):
    a, _ = worlds
    for url in (search_url("Patient"), read_url("Patient", a.patient.pk), reverse("fhir:metadata",
                                                                                   kwargs={"hospital_slug": "alpha"})):
        response = APIClient().get(url)
        assert_outcome(response, 401, "login")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_the_read_scope_is_403_everywhere(worlds, make_partner):
    a, _ = worlds
    _, writer = make_partner(a.hospital, scopes=["write", "screening:upload"], name="Writer")
    for name, ids_ in FHIR_ROUTES.items():
        if name == "fhir:unknown":
            continue
        body = assert_outcome(writer.get(fhir_url(name, "alpha", ids_[0](a) if ids_ else None)), 403, "forbidden")
        assert "read" in body["issue"][0]["diagnostics"]


def test_a_token_asked_for_less_than_read_is_403(worlds, make_partner):
    a, _ = worlds
    _, api = make_partner(a.hospital, token_scope="write")
    assert_outcome(api.get(search_url("Observation")), 403, "forbidden")


def test_a_revoked_clients_token_is_401(worlds, make_partner):
    from django.utils import timezone

    from hospitals.models import PartnerClient

    a, _ = worlds
    client, api = make_partner(a.hospital, scopes=["read"])
    with scopes_disabled():
        PartnerClient.objects.filter(pk=client.client.pk).update(revoked_at=timezone.now())
    assert_outcome(api.get(search_url("Patient")), 401)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CLINICIAN, Role.RADIOLOGIST])
def test_portal_session_of_a_member_reads(worlds, make_member, role):
    a, _ = worlds
    api = APIClient()
    api.force_login(make_member(a.hospital, role))
    assert ids(fhir_json(api.get(search_url("Patient")))) == [str(a.patient.pk)]
    fhir_json(api.get(read_url("Observation", a.result.pk)))
    fhir_json(api.get(read_url("DiagnosticReport", a.screening.pk)))


def test_portal_session_of_another_hospital_is_404(worlds):
    a, b = worlds
    api = APIClient()
    api.force_login(b.clinician)
    assert_outcome(api.get(read_url("Patient", a.patient.pk)), 404)
    assert_outcome(api.get(search_url("Patient")), 404)


def test_an_inactive_membership_is_404(worlds):
    a, _ = worlds
    with scopes_disabled():
        a.clinician_membership.is_active = False
        a.clinician_membership.save()
    api = APIClient()
    api.force_login(a.clinician)
    assert_outcome(api.get(search_url("Patient")), 404)


# --- audit ------------------------------------------------------------------------------------------------

def _rows(hospital, client, **filters):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(hospital=hospital, detail__client=client.client.pk, **filters))


def test_reads_are_audited_like_the_apis(worlds, fhir_api):
    a, _ = worlds
    client, api = fhir_api
    fhir_json(api.get(read_url("Patient", a.patient.pk)))
    [row] = _rows(a.hospital, client, action="view", object_type="patient")
    assert row.object_id == str(a.patient.pk) and row.actor == client.client.service_user
    fhir_json(api.get(search_url("Patient")))
    [row] = _rows(a.hospital, client, action="list", object_type="patient")
    assert row.detail["patients"] == [a.patient.pk]

    checks = [("Observation", a.result.pk, "airesult"), ("DiagnosticReport", a.screening.pk, "screening"),
              ("ImagingStudy", a.dicom_scan.pk, "scan"), ("Media", a.scan.pk, "scan"),
              ("Condition", a.status_change.pk, "status_change")]
    for resource_type, pk, object_type in checks:
        fhir_json(api.get(read_url(resource_type, pk)))
        assert any(r.object_id == str(pk) and r.detail["patients"] == [a.patient.pk]
                   for r in _rows(a.hospital, client, action="view", object_type=object_type)), resource_type
        fhir_json(api.get(search_url(resource_type)))
        assert any(pk in r.detail["ids"] for r in _rows(a.hospital, client, action="list",
                                                         object_type=object_type)), resource_type


def test_an_empty_search_and_a_404_leave_no_read_row(worlds, fhir_api):
    a, b = worlds
    client, api = fhir_api
    fhir_json(api.get(search_url("Patient"), {"identifier": "nobody"}))
    assert_outcome(api.get(read_url("Patient", b.patient.pk)), 404)
    assert not _rows(a.hospital, client, object_type="patient")


def test_session_reads_are_audited_with_the_user(worlds):
    a, _ = worlds
    api = APIClient()
    api.force_login(a.clinician)
    fhir_json(api.get(read_url("Observation", a.result.pk)))
    with scopes_disabled():
        assert AuditEvent.objects.filter(hospital=a.hospital, action="view", object_type="airesult",
                                         object_id=str(a.result.pk), actor=a.clinician).exists()


# --- wire format ------------------------------------------------------------------------------------------

def test_json_formats_are_answered_as_fhir_json_and_xml_is_406(worlds, fhir_api):
    _, api = fhir_api
    url = search_url("Patient")
    for accept in ("application/fhir+json", "application/json", "*/*", "text/html,application/xml;q=0.9,*/*;q=0.8"):
        fhir_json(api.get(url, HTTP_ACCEPT=accept))
    fhir_json(api.get(url, {"_format": "json"}))
    assert_outcome(api.get(url, HTTP_ACCEPT="application/fhir+xml"), 406, "not-supported")
    assert_outcome(api.get(url, {"_format": "xml"}), 406, "not-supported")


def test_writes_are_405(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    assert_outcome(api.post(search_url("Patient"), {"resourceType": "Patient"}, format="json"), 405, "not-supported")
    assert_outcome(api.delete(read_url("Patient", a.patient.pk)), 405, "not-supported")
    assert_outcome(api.put(read_url("Observation", a.result.pk), {}, format="json"), 405, "not-supported")


def test_unknown_types_and_operations_are_404(worlds, fhir_api):
    a, _ = worlds
    _, api = fhir_api
    for path in ("Encounter", "Encounter/1", f"Patient/{a.patient.pk}/_history", "Patient/"):
        assert_outcome(api.get(f"/fhir/alpha/{path}"), 404, "not-found")
    assert_outcome(APIClient().get("/fhir/alpha/Encounter"), 401)


def test_malformed_ids_are_404_like_missing_ones(worlds, fhir_api):
    _, api = fhir_api
    missing = api.get(read_url("Patient", MISSING))
    for pk in ("abc", "0", "-1", "1" * 40):
        response = api.get(read_url("Patient", pk))
        assert_outcome(response, 404) and response.content == missing.content
    assert_outcome(api.get(read_url("Device", "not-a-sha")), 404)
