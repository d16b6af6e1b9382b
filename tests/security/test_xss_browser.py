"""C1: stored XSS. A corpus of payloads goes into every free-text field people or partner
systems fill (hospital, member names, patient identity and contact fields, lab-test
notes, status-change and review reasons, screening failure reason, scan file name, webhook
description, receiver answers and errors, API client names); the portal pages and the
admin lists and change pages that show them are rendered in headless chromium under the
real CSP. No payload may run (no dialog), no handler attribute, `javascript:` link or
srcdoc frame may reach the DOM, and the page must raise no CSP violation (a violation
would mean markup got through and only the CSP stopped it)."""

import datetime

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.api.services import partner_client_create
from hospitals.models import Role
from patients import services as patient_services
from screening.models import Review
from webhooks.models import Attempt
from webhooks.services import endpoint_create

from ..factories import UserFactory, add_screening, add_webhook, hospital_world

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "' onmouseover=alert(3) x='",
    "javascript:alert(4)",
    "<svg onload=alert(5)>",
    '<iframe srcdoc="<script>alert(6)</script>">',
]
RECORD_CSP = """document.addEventListener('securitypolicyviolation', e =>
  (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI));"""
DANGEROUS_DOM = """() => document.querySelectorAll(
  '[onerror],[onload],[onmouseover],iframe[srcdoc],a[href^="javascript:"],script:not([src]):not([type])').length"""

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("flushable_audit")]


def fit(model, field, value):
    limit = model._meta.get_field(field).max_length
    return value[:limit] if limit else value


@pytest.fixture
def stored(hospital_a, make_member):
    """Hospital A with every payload in every text field; returns (world, fields, pairs)."""
    world = hospital_world(hospital_a, tag="ALPHA")
    add_screening(world, tag="ALPHA")
    add_webhook(world, tag="ALPHA")
    fields, pairs = set(), 0

    def put(model, obj, **values):
        nonlocal pairs
        values = {k: fit(model, k, v) for k, v in values.items()}
        with scopes_disabled():
            model._base_manager.filter(pk=obj.pk).update(**values)
        fields.update(f"{model._meta.label}.{k}" for k in values)
        pairs += len(values)

    hospital_a.name = PAYLOADS[0]
    hospital_a.save(update_fields=["name"])
    fields.add("hospitals.Hospital.name")
    pairs += 1
    today = datetime.date.today()
    with scope(hospital=hospital_a):
        for i, payload in enumerate(PAYLOADS):
            patient = patient_services.patient_create(
                hospital=hospital_a, actor=world.admin, mrn=fit(type(world.patient), "mrn", f"{i}{payload}"),
                given_name=payload, family_name=payload, sex="female", birth_date=datetime.date(1980, 1, 2))
            put(type(patient), patient, phone=payload, address=payload, national_id=payload)
            fields.update({"patients.Patient.mrn", "patients.Patient.given_name", "patients.Patient.family_name"})
            pairs += 3
            lab = patient_services.labtest_create(patient=patient, test_type="rt_pcr", result="positive",
                                                  sample_date=today, actor=world.clinician, notes=payload)
            patient_services.patient_change_status(patient=patient, to_status="carrier", effective_date=today,
                                                   reason=payload, actor=world.clinician, source="lab_result",
                                                   lab_test=lab)
            fields.update({"patients.LabTest.notes", "patients.StatusChange.reason"})
            pairs += 2
            make_member(hospital_a, Role.VIEWER, first_name=payload, last_name=payload)
            fields.update({"hospitals.User.first_name", "hospitals.User.last_name"})
            pairs += 2
            endpoint_create(hospital=hospital_a, url=f"https://r{i}.example/hook", events=["review.recorded"],
                            description=fit(type(world.endpoint), "description", payload), actor=world.admin)
            fields.add("webhooks.Endpoint.description")
            partner_client_create(hospital=hospital_a, name=payload, scopes=["read"], actor=world.admin)
            fields.add("hospitals.PartnerClient.name")
            pairs += 2
        review = Review.objects.get(pk=world.review.pk)
    put(type(world.screening), world.screening, reason=PAYLOADS[1])
    put(type(world.scan), world.scan, original_filename=PAYLOADS[2])
    put(Review, review, reason=PAYLOADS[4])
    put(Attempt, world.attempt, response_snippet=PAYLOADS[5], error=PAYLOADS[3])
    return world, fields, pairs


def pages(world) -> list[str]:
    slug = world.hospital.slug
    with scopes_disabled():
        patients = list(type(world.patient).objects.filter(hospital=world.hospital).values_list("pk", flat=True))
    portal = [
        reverse("hospitals:dashboard", kwargs={"hospital_slug": slug}),
        reverse("patients:list", kwargs={"hospital_slug": slug}),
        reverse("hospitals:members", kwargs={"hospital_slug": slug}),
        reverse("hospitals:audit_list", kwargs={"hospital_slug": slug}),
        reverse("hospitals:api_clients", kwargs={"hospital_slug": slug}),
        reverse("webhooks:list", kwargs={"hospital_slug": slug}),
        reverse("webhooks:deliveries", kwargs={"hospital_slug": slug, "pk": world.endpoint.pk}),
        reverse("webhooks:delivery", kwargs={"hospital_slug": slug, "pk": world.delivery.pk}),
        reverse("screening:detail", kwargs={"hospital_slug": slug, "pk": world.screening.pk}),
        *[reverse("patients:detail", kwargs={"hospital_slug": slug, "pk": pk}) for pk in patients],
        *[reverse("patients:edit", kwargs={"hospital_slug": slug, "pk": pk}) for pk in patients[:2]],
    ]
    lists = [reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") for m in admin.site._registry]
    changes = [reverse("admin:patients_patient_change", args=[pk]) for pk in patients]
    changes += [reverse("admin:webhooks_attempt_change", args=[world.attempt.pk]),
                reverse("admin:screening_review_change", args=[world.review.pk]),
                reverse("admin:hospitals_hospital_change", args=[world.hospital.pk])]
    return portal + lists + changes


def test_no_payload_runs_anywhere(stored, live_server, browser, figure):
    world, fields, pairs = stored
    sessions = {}
    for name, user in (("portal", world.admin), ("admin", UserFactory(is_superuser=True, is_staff=True))):
        client = Client()
        client.force_login(user)
        sessions[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
    executions, violations, dangerous, failures = [], [], [], []
    urls = pages(world)
    for name, key in sessions.items():
        context = browser.new_context()
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": key, "url": live_server.url}])
        context.add_init_script(RECORD_CSP)
        page = context.new_page()
        page.on("dialog", lambda dialog, page=page: (executions.append(f"{page.url}: {dialog.message}"),
                                                     dialog.dismiss()))
        for url in urls:
            if url.startswith("/admin/") != (name == "admin"):
                continue
            response = page.goto(live_server.url + url, wait_until="load")
            if response.status != 200 or "/accounts/" in page.url:
                failures.append(f"{url}: {response.status} at {page.url}")
            page.hover("body")
            violations += [f"{url}: {v}" for v in page.evaluate("() => window.__csp || []")]
            if page.evaluate(DANGEROUS_DOM):
                dangerous.append(url)
        context.close()
    assert not failures, failures
    assert not executions, executions
    assert not dangerous, dangerous
    assert not violations, violations
    figure("C1", f"fields F={len(fields)} x payloads P={len(PAYLOADS)} ({pairs} stored values) x pages G={len(urls)} "
           f"rendered in chromium; executions 0; CSP violations 0", fields=len(fields), payloads=len(PAYLOADS),
           pages=len(urls), executions=0, csp_violations=0)
