"""Members pages: only hospital admins manage members; invitations, role changes,
deactivation (which ends the member's sessions) and reactivation."""

import re

import pytest
from allauth.core.context import request_context
from django.core import mail
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.models import AuditEvent, Membership, Role, User
from tests.factories import MembershipFactory, UserFactory

NEW_PASSWORD = "a-long-new-password-41"


def hurl(name, hospital, **kwargs):
    return reverse(f"hospitals:{name}", kwargs={"hospital_slug": hospital.slug, **kwargs})


@pytest.fixture
def admin(hospital_a, make_member):
    return make_member(hospital_a, Role.HOSPITAL_ADMIN, email="boss@example.org")


@pytest.fixture
def member(hospital_a, make_member):
    return make_member(hospital_a, Role.VIEWER, email="staff@example.org")


def membership_of(user, hospital):
    with scopes_disabled():
        return Membership.objects.get(user=user, hospital=hospital)


@pytest.mark.parametrize("role", list(Role.values))
def test_members_pages_only_for_hospital_admins(role, hospital_a, member, make_member, login):
    client = login(make_member(hospital_a, role))
    pk = membership_of(member, hospital_a).pk
    expected = 200 if role == Role.HOSPITAL_ADMIN else 403
    pages = (hurl("members", hospital_a), hurl("member_invite", hospital_a), hurl("member_edit", hospital_a, pk=pk))
    for page in pages:
        assert client.get(page).status_code == expected, page
    if role != Role.HOSPITAL_ADMIN:
        response = client.post(hurl("member_edit", hospital_a, pk=pk), {"op": "deactivate"})
        assert response.status_code == 403
        assert membership_of(member, hospital_a).is_active


def test_members_list_shows_this_hospitals_members(hospital_a, hospital_b, admin, member, make_member, login):
    make_member(hospital_b, Role.VIEWER, email="elsewhere@example.org")
    html = login(admin).get(hurl("members", hospital_a)).content.decode()
    assert "staff@example.org" in html
    assert "Viewer" in html
    assert "elsewhere@example.org" not in html


def test_other_hospitals_membership_is_404(hospital_a, hospital_b, admin, make_member, login):
    foreign = make_member(hospital_b, Role.VIEWER)
    pk = membership_of(foreign, hospital_b).pk
    client = login(admin)
    assert client.get(hurl("member_edit", hospital_a, pk=pk)).status_code == 404
    assert client.post(hurl("member_edit", hospital_a, pk=pk), {"op": "deactivate"}).status_code == 404
    assert membership_of(foreign, hospital_b).is_active


def test_non_member_gets_404(hospital_a, hospital_b, make_member, login):
    client = login(make_member(hospital_b, Role.HOSPITAL_ADMIN))
    assert client.get(hurl("members", hospital_a)).status_code == 404
    assert client.get(hurl("member_invite", hospital_a)).status_code == 404


def post_and_commit(client, capture, path, data):
    """POST, then run the on-commit callbacks (the invitation mail) the way a real request
    does: inside allauth's request context, which its mail adapter reads."""
    with capture() as callbacks:
        response = client.post(path, data)
    with request_context(response.wsgi_request):
        for callback in callbacks:
            callback()
    return response


def test_invite_new_person_sets_password_through_link_and_logs_in(
    hospital_a, admin, login, client, django_capture_on_commit_callbacks
):
    response = post_and_commit(login(admin), django_capture_on_commit_callbacks, hurl("member_invite", hospital_a), {
        "email": "New.Nurse@Example.org", "first_name": "Nina", "last_name": "Nurse", "role": Role.CLINICIAN,
    })
    assert response.status_code == 302
    user = User.objects.get(email="new.nurse@example.org")
    assert not user.has_usable_password()
    membership = membership_of(user, hospital_a)
    assert (membership.role, membership.invited_by) == (Role.CLINICIAN, admin)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.nurse@example.org"]
    assert "Alpha General" in message.subject
    link = re.search(r"https?://\S+", message.body).group(0)
    assert "/accounts/password/reset/key/" in link

    client.logout()
    # Following the link stores the key in the session and redirects to a key-less URL.
    response = client.get(link, follow=True)
    assert response.status_code == 200
    form_url = response.redirect_chain[-1][0]
    response = client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)

    response = client.post(reverse("account_login"), {"login": "new.nurse@example.org", "password": NEW_PASSWORD},
                           follow=True)
    assert response.context["user"].is_authenticated
    assert response.redirect_chain[-1][0] == hurl("dashboard", hospital_a)


def test_invite_existing_user_gets_notice_without_password_link(
    hospital_a, hospital_b, admin, make_member, login, django_capture_on_commit_callbacks
):
    existing = make_member(hospital_b, Role.CLINICIAN, email="known@example.org")
    post_and_commit(login(admin), django_capture_on_commit_callbacks, hurl("member_invite", hospital_a),
                    {"email": "KNOWN@example.org", "role": Role.VIEWER})
    assert membership_of(existing, hospital_a).role == Role.VIEWER
    assert len(mail.outbox) == 1
    assert "/password/reset/key/" not in mail.outbox[0].body
    assert User.objects.filter(email__iexact="known@example.org").count() == 1


def test_invite_errors_are_shown_and_nothing_is_sent(
    hospital_a, admin, member, login, django_capture_on_commit_callbacks
):
    client = login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        bad_email = client.post(hurl("member_invite", hospital_a), {"email": "not-an-email", "role": Role.VIEWER})
        already = client.post(hurl("member_invite", hospital_a),
                              {"email": "staff@example.org", "first_name": "Kept", "role": Role.CLINICIAN})
    assert bad_email.status_code == 200 and bad_email.context["form"].errors["email"]
    assert "already a member" in already.content.decode()
    assert 'value="Kept"' in already.content.decode()
    assert mail.outbox == []
    assert membership_of(member, hospital_a).role == Role.VIEWER


def test_change_role(hospital_a, admin, member, login):
    pk = membership_of(member, hospital_a).pk
    response = login(admin).post(hurl("member_edit", hospital_a, pk=pk), {"op": "role", "role": Role.REGISTRAR})
    assert response.status_code == 302
    assert membership_of(member, hospital_a).role == Role.REGISTRAR
    with scopes_disabled():
        event = AuditEvent.objects.filter(object_type="membership", object_id=str(pk)).latest("seq")
    assert event.detail == {"role": [Role.VIEWER, Role.REGISTRAR]}


def test_admin_cannot_demote_self_and_sees_why(hospital_a, admin, login):
    pk = membership_of(admin, hospital_a).pk
    response = login(admin).post(hurl("member_edit", hospital_a, pk=pk), {"op": "role", "role": Role.VIEWER})
    assert response.status_code == 200
    assert "cannot remove your own admin role" in response.content.decode()
    assert membership_of(admin, hospital_a).role == Role.HOSPITAL_ADMIN


def test_deactivate_ends_sessions_and_reactivate(
    hospital_a, admin, member, login, client, django_capture_on_commit_callbacks
):
    from django.test import Client

    member_client = Client()
    member_client.force_login(member)
    assert member_client.get(hurl("dashboard", hospital_a)).status_code == 200

    pk = membership_of(member, hospital_a).pk
    with django_capture_on_commit_callbacks(execute=True):
        response = login(admin).post(hurl("member_edit", hospital_a, pk=pk), {"op": "deactivate"})
    assert response.status_code == 302
    assert not membership_of(member, hospital_a).is_active

    # The member's session is gone: the portal sends them to the sign-in page.
    response = member_client.get(hurl("dashboard", hospital_a))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]
    # Signing in again does not restore access to this hospital.
    member_client.force_login(member)
    assert member_client.get(hurl("dashboard", hospital_a)).status_code == 404
    assert "Deactivated" in client.get(hurl("members", hospital_a)).content.decode()

    response = client.post(hurl("member_edit", hospital_a, pk=pk), {"op": "reactivate"})
    assert response.status_code == 302
    assert membership_of(member, hospital_a).is_active
    assert member_client.get(hurl("dashboard", hospital_a)).status_code == 200


def test_admin_cannot_deactivate_self(hospital_a, admin, login):
    pk = membership_of(admin, hospital_a).pk
    response = login(admin).post(hurl("member_edit", hospital_a, pk=pk), {"op": "deactivate"})
    assert "cannot deactivate yourself" in response.content.decode()
    assert membership_of(admin, hospital_a).is_active


def test_deactivation_in_one_hospital_keeps_the_other(hospital_a, hospital_b, admin, login):
    both = UserFactory(email="both@example.org")
    with scopes_disabled():
        in_a = MembershipFactory(user=both, hospital=hospital_a, role=Role.VIEWER)
        MembershipFactory(user=both, hospital=hospital_b, role=Role.VIEWER)
    login(admin).post(hurl("member_edit", hospital_a, pk=in_a.pk), {"op": "deactivate"})
    assert not membership_of(both, hospital_a).is_active
    assert membership_of(both, hospital_b).is_active
