"""B5: security headers on a sample of responses of every kind (sign-in pages, portal pages
with patient data, scan files, admin, partner API by token and by session, FHIR, errors),
requested over HTTPS with the production HSTS settings: HSTS, nosniff, Referrer-Policy, a
CSP without inline script that forbids framing, and `Cache-Control: no-store`."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from ..factories import add_screening, hospital_world


@pytest.fixture
def production_https(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True


def csp_directives(value: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in value.split(";") if part.strip()}


def header_problems(response) -> list[str]:
    problems = []
    if "max-age=31536000" not in response.get("Strict-Transport-Security", ""):
        problems.append("HSTS")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append("nosniff")
    if response.get("Referrer-Policy") != "same-origin":
        problems.append("Referrer-Policy")
    csp = csp_directives(response.get("Content-Security-Policy", ""))
    script = csp.get("script-src", csp.get("default-src", []))
    if not script or any(s in script for s in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:")):
        problems.append(f"CSP script-src {script}")
    for directive, expected in (("frame-ancestors", ["'none'"]), ("object-src", ["'none'"]),
                                ("base-uri", ["'self'"]), ("form-action", ["'self'"])):
        if csp.get(directive) != expected:
            problems.append(f"CSP {directive} {csp.get(directive)}")
    if "no-store" not in response.get("Cache-Control", ""):
        problems.append("no-store")
    return problems


def test_headers_on_a_sample_of_responses(hospital_a, make_partner, production_https, figure):
    world = hospital_world(hospital_a, tag="ALPHA")
    add_screening(world, tag="ALPHA")
    slug, patient = "alpha", world.patient.pk
    anonymous = Client()
    clinician, admin = Client(), Client()
    clinician.force_login(world.clinician)
    admin.force_login(world.admin)
    session_api = APIClient()
    session_api.force_login(world.clinician)
    _, token_api = make_partner(hospital_a, scopes=["read"])
    sample = [
        (anonymous, reverse("account_login")),
        (anonymous, reverse("account_reset_password")),
        (anonymous, f"/h/{slug}/patients/"),  # a redirect to the sign-in
        (anonymous, "/no/such/page/"),
        (clinician, reverse("hospitals:dashboard", kwargs={"hospital_slug": slug})),
        (clinician, reverse("patients:list", kwargs={"hospital_slug": slug})),
        (clinician, reverse("patients:detail", kwargs={"hospital_slug": slug, "pk": patient})),
        (clinician, reverse("screening:detail", kwargs={"hospital_slug": slug, "pk": world.screening.pk})),
        (clinician, reverse("screening:scan_original", kwargs={"hospital_slug": slug, "pk": world.scan.pk})),
        (clinician, reverse("screening:scan_preview", kwargs={"hospital_slug": slug, "pk": world.scan.pk})),
        (clinician, reverse("screening:heatmap", kwargs={"hospital_slug": slug, "pk": world.result.pk})),
        (clinician, f"/h/{slug}/patients/987654321/"),
        (admin, reverse("admin:index")),
        (admin, reverse("admin:patients_patient_changelist")),
        (admin, reverse("admin:patients_patient_change", args=[patient])),
        (admin, reverse("hospitals:audit_list", kwargs={"hospital_slug": slug})),
        (session_api, reverse("api:patient-list", kwargs={"hospital_slug": slug})),
        (token_api, reverse("api:patient-list", kwargs={"hospital_slug": slug})),
        (token_api, reverse("api:patient-detail", kwargs={"hospital_slug": slug, "pk": patient})),
        (token_api, reverse("api:patient-history", kwargs={"hospital_slug": slug, "pk": patient})),
        (token_api, f"/fhir/{slug}/Patient/{patient}"),
        (token_api, f"/fhir/{slug}/Observation?patient={patient}"),
        (APIClient(), reverse("api:patient-list", kwargs={"hospital_slug": slug})),  # 401
        (anonymous, reverse("api:schema")),
        (anonymous, reverse("api:docs")),
    ]
    missing = []
    for client, url in sample:
        response = client.get(url, secure=True)
        assert response.status_code in (200, 302, 401, 404), (url, response.status_code)
        missing += [f"{url} ({response.status_code}): {p}" for p in header_problems(response)]
    assert not missing, "\n".join(missing)
    figure("B5 headers", f"responses missing HSTS/nosniff/CSP/frame-ancestors/no-store 0 (of {len(sample)} sampled)",
           sampled=len(sample), missing=0)


def test_only_the_redoc_page_relaxes_the_policy(db):
    redoc = csp_directives(Client().get(reverse("api:redoc"))["Content-Security-Policy"])
    docs = csp_directives(Client().get(reverse("api:docs"))["Content-Security-Policy"])
    assert redoc["worker-src"] == ["blob:"] and "worker-src" not in docs
    assert redoc["script-src"] == docs["script-src"] == ["'self'"]
    # Swagger UI's set-up script is a file, not inline.
    page = Client().get(reverse("api:docs")).content.decode()
    assert "<script>" not in page and "?script" in page
