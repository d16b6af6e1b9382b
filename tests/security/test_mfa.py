"""B2: hospital admins and platform staff need a second factor (allauth.mfa TOTP or a
recovery code) before any admin page or patient data opens; a TOTP code works once.

Every sign-in here goes through allauth's pages (no force_login, which the suite treats as
having passed the second factor)."""

import datetime

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from django.contrib import admin
from django.urls import reverse
from freezegun import freeze_time

from hospitals.models import Role

from ..factories import PASSWORD, UserFactory, add_screening, hospital_world, totp_code
from .conftest import fresh_client, sign_in

# allauth announces a new authenticator after the commit, which a test transaction never makes.
pytestmark = pytest.mark.usefixtures("flushable_audit")
START = datetime.datetime(2026, 3, 2, 9, 0, 5, tzinfo=datetime.UTC)


def protected_urls(world) -> list[str]:
    """Admin pages (the index and every ModelAdmin's list) and pages with patient data:
    portal, partner API (session) and FHIR."""
    slug = world.hospital.slug
    urls = [reverse("admin:index")]
    urls += [reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") for m in admin.site._registry]
    urls += [
        reverse("hospitals:dashboard", kwargs={"hospital_slug": slug}),
        reverse("hospitals:members", kwargs={"hospital_slug": slug}),
        reverse("hospitals:audit_list", kwargs={"hospital_slug": slug}),
        reverse("patients:list", kwargs={"hospital_slug": slug}),
        reverse("patients:detail", kwargs={"hospital_slug": slug, "pk": world.patient.pk}),
        reverse("screening:detail", kwargs={"hospital_slug": slug, "pk": world.screening.pk}),
        reverse("api:patient-list", kwargs={"hospital_slug": slug}),
        f"/fhir/{slug}/Patient",
    ]
    return urls


@pytest.fixture
def world(hospital_a):
    world = hospital_world(hospital_a, tag="ALPHA")
    add_screening(world, tag="ALPHA")
    return world


def enrol(client) -> str:
    """Activate TOTP on allauth's page (which asks for the password again first); returns
    the secret."""
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 302 and page["Location"].startswith(reverse("account_reauthenticate"))
    assert client.post(reverse("account_reauthenticate"), {"password": PASSWORD}).status_code == 302
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return secret


@pytest.mark.parametrize("who", ["hospital_admin", "superuser", "staff"])
def test_no_admin_page_or_patient_data_before_the_second_factor(world, who, figure):
    user = {"hospital_admin": world.admin, "superuser": UserFactory(is_superuser=True, is_staff=True),
            "staff": UserFactory(is_staff=True)}[who]
    client = fresh_client()
    with freeze_time(START, tick=True):
        assert sign_in(client, user.email).status_code == 302
        assert client.session.get("_auth_user_id") == str(user.pk)  # the password alone signs in ...
        reachable = []
        for url in protected_urls(world):
            response = client.get(url)
            # ... but every page sends them to enrol, keeping where they wanted to go.
            if not (response.status_code == 302 and response["Location"].startswith(reverse("mfa_activate_totp"))):
                reachable.append(f"{url}: {response.status_code}")
        assert not reachable, reachable
        enrol(client)
        assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
        assert client.get(reverse("admin:index"), follow=True).status_code == (403 if who == "staff" else 200)
        if who == "hospital_admin":
            assert client.get(reverse("patients:list", kwargs={"hospital_slug": "alpha"})).status_code == 200
    figure(f"B2 {who}", f"admin routes reachable without 2nd factor: {len(reachable)} "
           f"(of {len(protected_urls(world))} admin and patient-data routes probed)",
           reachable=len(reachable), probed=len(protected_urls(world)))


def test_members_without_an_admin_role_need_no_second_factor(world):
    client = fresh_client()
    assert sign_in(client, world.clinician.email).status_code == 302
    assert client.get(reverse("patients:list", kwargs={"hospital_slug": "alpha"})).status_code == 200


def test_enrolled_admin_signs_in_with_a_code_that_works_once(world):
    client = fresh_client()
    with freeze_time(START) as clock:
        sign_in(client, world.admin.email)
        secret = enrol(client)
        client.post(reverse("account_logout"))

        # Signing in again asks for the code; the password alone does not sign in.
        client = fresh_client()
        response = sign_in(client, world.admin.email)
        assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
        assert "_auth_user_id" not in client.session
        # The code used to enrol, still inside its 30-second window, is refused: codes work once.
        response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
        assert response.status_code == 200 and "_auth_user_id" not in client.session
        assert client.get(reverse("admin:index")).status_code == 302
        # The next window's code signs in, once.
        clock.tick(30)
        code = totp_code(secret)
        assert client.post(reverse("mfa_authenticate"), {"code": code}).status_code == 302
        assert client.session["_auth_user_id"] == str(world.admin.pk)
        assert client.get(reverse("admin:index")).status_code == 200
        other = fresh_client()
        sign_in(other, world.admin.email)
        assert other.post(reverse("mfa_authenticate"), {"code": code}).status_code == 200
        assert "_auth_user_id" not in other.session


def test_a_recovery_code_signs_in_once(world):
    client = fresh_client()
    with freeze_time(START, tick=True):
        sign_in(client, world.admin.email)
        enrol(client)
        codes = RecoveryCodes(Authenticator.objects.get(user=world.admin, type=Authenticator.Type.RECOVERY_CODES))
        code = codes.get_unused_codes()[0]
        for attempt, expected in ((1, True), (2, False)):
            browser = fresh_client()
            sign_in(browser, world.admin.email)
            browser.post(reverse("mfa_authenticate"), {"code": code})
            assert ("_auth_user_id" in browser.session) is expected, attempt


def test_the_stock_admin_login_does_not_sign_anyone_in(world):
    client = fresh_client()
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    response = client.post(reverse("admin:login"), {"username": world.admin.email, "password": "x",
                                                    "email": world.admin.email})
    assert response.status_code == 302 and "_auth_user_id" not in client.session


def test_roles_change_at_once(world, hospital_a, in_scope):
    """Promoting a clinician to hospital admin puts the requirement on their open session."""
    client = fresh_client()
    sign_in(client, world.clinician.email)
    patients = reverse("patients:list", kwargs={"hospital_slug": "alpha"})
    assert client.get(patients).status_code == 200
    world.clinician_membership.role = Role.HOSPITAL_ADMIN
    world.clinician_membership.save(update_fields=["role"])
    assert client.get(patients)["Location"].startswith(reverse("mfa_activate_totp"))
