"""Accounts: case-insensitive email uniqueness enforced in code (allauth's own constraint
is not created on MySQL/MariaDB; the suite runs on both), the sign-in rate limit on the
real cache, and deactivation ending a member's sessions."""

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.core import mail
from django.test import Client, RequestFactory
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals import services
from hospitals.models import Membership, Role, User

from ..factories import PASSWORD, UserFactory, hospital_world


# --- email uniqueness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("second", ["foo@x.org", "FOO@X.ORG", "  Foo@x.Org "])
def test_user_create_refuses_the_same_email_in_another_case(db, second):
    first = services.user_create(email="Foo@X.org")
    assert first.email == "foo@x.org"
    with pytest.raises(ValidationError) as excinfo:
        services.user_create(email=second)
    assert "already exists" in excinfo.value.message_dict["email"][0]
    assert User.objects.filter(email__iexact="foo@x.org").count() == 1


def test_find_by_email_ignores_case_and_spaces(db):
    user = services.user_create(email="foo@x.org")
    assert services.user_find_by_email(email=" FOO@X.org ") == user


def test_the_database_refuses_a_case_variant_written_past_the_services(db):
    services.user_create(email="foo@x.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(email="Foo@X.org")  # lower-cased on save: same value, unique index


def test_invite_with_another_case_reuses_the_existing_account(hospital_a, django_capture_on_commit_callbacks):
    existing = services.user_create(email="foo@x.org", verified=True)
    inviter = UserFactory()
    request = RequestFactory().post("/")
    request.user = inviter
    with scope(hospital=hospital_a), django_capture_on_commit_callbacks(execute=True):
        membership = services.membership_invite(hospital=hospital_a, email="Foo@X.org", role=Role.VIEWER,
                                                invited_by=inviter, request=request)
    assert membership.user == existing
    assert [m.to for m in mail.outbox] == [["foo@x.org"]]  # a notice to the existing account
    assert User.objects.filter(email__iexact="foo@x.org").count() == 1


def test_invite_of_an_active_member_in_another_case_is_refused(hospital_a):
    inviter = UserFactory()
    with scope(hospital=hospital_a):
        services.membership_invite(hospital=hospital_a, email="foo@x.org", role=Role.VIEWER, invited_by=inviter)
        with pytest.raises(ValidationError) as excinfo:
            services.membership_invite(hospital=hospital_a, email="FOO@x.org", role=Role.CLINICIAN,
                                       invited_by=inviter)
    assert "already a member" in excinfo.value.message_dict["email"][0]
    with scopes_disabled():
        assert Membership.objects.filter(hospital=hospital_a, user__email="foo@x.org").count() == 1


# --- sign-in rate limit -------------------------------------------------------------------------------
def sign_in(client, email, password):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_the_suite_uses_the_configured_shared_cache():
    """Rate limits are only real on a cache shared by every process (Redis here when it
    runs; the test settings fall back to local memory only when it is unreachable)."""
    backend = settings.CACHES["default"]["BACKEND"]
    used = caches["default"]
    assert f"{type(used).__module__}.{type(used).__name__}" == backend


def test_correct_password_is_refused_after_too_many_failures_for_that_email(db):
    user = UserFactory(email="ratelimited@example.org")
    other = UserFactory(email="unrelated@example.org")
    client = Client()
    limit = int(settings.ACCOUNT_RATE_LIMITS["login_failed"].split(",")[1].split("/")[0])  # per key
    for _ in range(limit):
        response = sign_in(client, user.email, "wrong password!")
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    response = sign_in(client, user.email, PASSWORD)
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert "Too many failed login attempts" in response.content.decode()
    # The limit is per account (key): another account from the same address still signs in.
    response = sign_in(Client(), other.email, PASSWORD)
    assert response.status_code == 302


def test_failures_below_the_limit_do_not_lock_the_account(db):
    user = UserFactory(email="almost@example.org")
    client = Client()
    for _ in range(2):
        sign_in(client, user.email, "wrong password!")
    assert sign_in(client, user.email, PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


# --- deactivation ends sessions -----------------------------------------------------------------------
def test_deactivating_a_member_ends_their_sessions(hospital_a, make_member, django_capture_on_commit_callbacks):
    a = hospital_world(hospital_a, tag="ALPHA")
    colleague = make_member(hospital_a, Role.VIEWER)
    dashboard = reverse("hospitals:dashboard", kwargs={"hospital_slug": "alpha"})
    browsers = [Client(), Client()]
    for browser in browsers:
        assert sign_in(browser, a.clinician.email, PASSWORD).status_code == 302
        assert browser.get(dashboard).status_code == 200
    assert UserSession.objects.filter(user=a.clinician).count() == 2
    bystander = Client()
    sign_in(bystander, colleague.email, PASSWORD)

    with scope(hospital=hospital_a), django_capture_on_commit_callbacks(execute=True):
        services.membership_deactivate(membership=a.clinician_membership, actor=a.admin)

    for browser in browsers:
        response = browser.get(dashboard)
        assert response.status_code == 302 and response.url.startswith(reverse("account_login"))
    assert UserSession.objects.filter(user=a.clinician).count() == 0
    assert bystander.get(dashboard).status_code == 200  # other users keep their sessions


def test_a_deactivated_member_who_signs_in_again_gets_404_for_the_hospital(hospital_a,
                                                                          django_capture_on_commit_callbacks):
    a = hospital_world(hospital_a, tag="ALPHA")
    with scope(hospital=hospital_a), django_capture_on_commit_callbacks(execute=True):
        services.membership_deactivate(membership=a.clinician_membership, actor=a.admin)
    client = Client()
    assert sign_in(client, a.clinician.email, PASSWORD).status_code == 302
    assert client.get(reverse("hospitals:dashboard", kwargs={"hospital_slug": "alpha"})).status_code == 404


def test_an_admin_cannot_deactivate_themselves(hospital_a):
    a = hospital_world(hospital_a, tag="ALPHA")
    with scope(hospital=hospital_a), pytest.raises(ValidationError):
        services.membership_deactivate(membership=a.admin_membership, actor=a.admin)
