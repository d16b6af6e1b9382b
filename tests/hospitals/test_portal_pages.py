"""Home, dashboard and the shared layout (navigation per role, hospital switcher,
sign-out, allauth pages in the portal layout)."""

import datetime

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent, Role
from patients import services
from patients.models import Status
from tests.factories import MembershipFactory, PatientFactory


def hurl(name, hospital, **kwargs):
    return reverse(f"hospitals:{name}", kwargs={"hospital_slug": hospital.slug, **kwargs})


def test_home_redirects_single_membership_to_dashboard(hospital_a, make_member, login):
    response = login(make_member(hospital_a, Role.VIEWER)).get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == hurl("dashboard", hospital_a)


def test_home_lists_hospitals_to_pick(hospital_a, hospital_b, make_member, login):
    user = make_member(hospital_a, Role.VIEWER)
    with scopes_disabled():
        MembershipFactory(user=user, hospital=hospital_b, role=Role.CLINICIAN)
    html = login(user).get(reverse("home")).content.decode()
    assert hurl("dashboard", hospital_a) in html and hurl("dashboard", hospital_b) in html
    assert "Clinician" in html


def test_home_without_memberships_says_so(db, django_user_model, login):
    user = django_user_model.objects.create_user(email="lonely@example.org", password="x" * 14)
    response = login(user).get(reverse("home"))
    assert response.status_code == 200
    assert "not a member of any hospital" in response.content.decode()


def test_home_needs_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and reverse("account_login") in response["Location"]


@pytest.mark.parametrize("role", list(Role.values))
def test_dashboard_for_every_role(role, hospital_a, make_member, login):
    response = login(make_member(hospital_a, role)).get(hurl("dashboard", hospital_a))
    assert response.status_code == 200
    html = response.content.decode()
    admin_links = [hurl("members", hospital_a), hurl("audit_list", hospital_a)]
    if role == Role.HOSPITAL_ADMIN:
        assert all(link in html for link in admin_links)
    else:
        assert not any(link in html for link in admin_links)
    assert reverse("patients:list", kwargs={"hospital_slug": hospital_a.slug}) in html


def test_dashboard_404_for_non_member_and_missing_hospital(hospital_a, hospital_b, make_member, login):
    client = login(make_member(hospital_b, Role.HOSPITAL_ADMIN))
    assert client.get(hurl("dashboard", hospital_a)).status_code == 404
    assert client.get("/h/no-such-hospital/").status_code == 404


def test_dashboard_counts_and_recent_changes(hospital_a, hospital_b, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN)
    with scopes_disabled():
        PatientFactory.create_batch(3, hospital=hospital_a, status=Status.CARRIER)
        PatientFactory.create_batch(5, hospital=hospital_b, status=Status.CARRIER)
    with scope(hospital=hospital_a):
        patient = services.patient_create(hospital=hospital_a, actor=clinician, mrn="D-1", given_name="Dora",
                                          family_name="Dash", sex="female", birth_date=datetime.date(1990, 1, 1))
        services.patient_change_status(patient=patient, to_status=Status.NEGATIVE,
                                       effective_date=datetime.date.today(), reason="PCR negative", actor=clinician)
    response = login(clinician).get(hurl("dashboard", hospital_a))
    counts = {figure.status.value: figure.count for figure in response.context["status_figures"]}
    assert counts["carrier"] == 3 and counts["negative"] == 1 and counts["suspected"] == 0
    assert response.context["total_patients"] == 4
    html = response.content.decode()
    assert "Dora Dash" in html
    assert 'class="badge status-negative"' in html
    with scopes_disabled():
        event = AuditEvent.objects.get(hospital=hospital_a, action="list", actor=clinician)
    assert event.detail == {"patients": [patient.pk]}


def test_layout_shows_user_hospital_switcher_and_logout(hospital_a, hospital_b, make_member, login):
    user = make_member(hospital_a, Role.CLINICIAN, email="two@example.org")
    with scopes_disabled():
        MembershipFactory(user=user, hospital=hospital_b, role=Role.VIEWER)
    html = login(user).get(hurl("dashboard", hospital_a)).content.decode()
    assert "two@example.org" in html
    assert "Alpha General" in html
    assert hurl("dashboard", hospital_b) in html  # switcher
    assert f'method="post" action="{reverse("account_logout")}"' in html


def test_names_are_escaped(hospital_a, make_member, login):
    with scopes_disabled():
        hospital_a.name = "<script>alert(1)</script>"
        hospital_a.save()
    html = login(make_member(hospital_a, Role.VIEWER)).get(hurl("dashboard", hospital_a)).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_logout_by_post(hospital_a, make_member, login):
    client = login(make_member(hospital_a, Role.VIEWER))
    response = client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert client.get(hurl("dashboard", hospital_a)).status_code == 302  # back to sign-in


@pytest.mark.parametrize("name", ["account_login", "account_reset_password"])
def test_allauth_pages_use_portal_layout(name, client, db):
    response = client.get(reverse(name))
    html = response.content.decode()
    assert response.status_code == 200
    assert "css/portal.css" in html and "CovidCare Records" in html
    assert "sign up" not in html.lower()


# --- Error pages ------------------------------------------------------------------------------

def test_404_page_in_portal_style(hospital_a, make_member, login):
    response = login(make_member(hospital_a, Role.VIEWER)).get(
        reverse("patients:detail", kwargs={"hospital_slug": hospital_a.slug, "pk": 999999}))
    html = response.content.decode()
    assert response.status_code == 404
    assert "css/portal.css" in html and "Page not found" in html
    assert hurl("dashboard", hospital_a) in html  # a way back into the hospital


def test_404_for_unknown_hospital_and_api_paths(db, client):
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and "Page not found" in page.content.decode()
    api = client.get("/api/v1/no-such-thing/")
    assert api.status_code == 404 and api["Content-Type"] == "application/problem+json"


def test_403_page_names_the_role(hospital_a, make_member, login):
    response = login(make_member(hospital_a, Role.VIEWER)).get(hurl("members", hospital_a))
    html = response.content.decode()
    assert response.status_code == 403
    assert "css/portal.css" in html and "Your role at Alpha General is viewer" in html


def test_500_page_renders_without_request_or_context(db):
    from django.template import Context, engines

    html = engines["django"].engine.get_template("500.html").render(Context())
    assert "Something went wrong" in html and "css/portal.css" in html


def test_500_handler_answers_with_the_page(db, rf):
    from hospitals.api.exceptions import handler500

    response = handler500(rf.get("/h/alpha/"))
    assert response.status_code == 500 and b"Something went wrong" in response.content


def test_csrf_failure_page_in_portal_style(hospital_a, make_member):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(hospital_a, Role.VIEWER))
    response = client.post(reverse("account_logout"))
    html = response.content.decode()
    assert response.status_code == 403
    assert "css/portal.css" in html and "Nothing was saved." in html

# --- Templates: CSP and translation readiness ---------------------------------------------------

def _templates():
    from pathlib import Path

    from django.conf import settings

    root = Path(settings.BASE_DIR) / "templates"
    return root, sorted(root.rglob("*.html")) + sorted(root.rglob("*.txt"))


def test_no_template_has_inline_script():
    """The Content-Security-Policy forbids inline script: no script bodies, no on* handler
    attributes, no javascript: URLs in any template."""
    import re

    root, paths = _templates()
    offenders = [str(p.relative_to(root)) for p in paths
                 if re.search(r"<script(\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|javascript:", p.read_text())]
    assert paths and offenders == []


def test_portal_templates_are_ready_for_translation():
    """The layout, the error pages and the hospital and patient pages mark their text for
    translation."""
    root, paths = _templates()
    top = {"base.html", "404.html", "403.html", "403_csrf.html", "500.html", "includes/form_fields.html", "includes/pagination.html",
           "includes/ai_disclaimer.html"}
    owned = [p for p in paths if p.relative_to(root).parts[0] in {"hospitals", "patients"}
             or str(p.relative_to(root)) in top]
    assert len(owned) > 20
    assert [str(p.relative_to(root)) for p in owned if "{% load i18n" not in p.read_text()] == []
