"""What every signed-in portal request reads, each by a statement compiled once per
connection (`config.prepared`): the session (`hospitals.sessions`), its user
(`hospitals.backends`) and the user's memberships (`hospitals.selectors.user_memberships`).
Each must read what Django's and the ORM's own reads do."""

import datetime

import pytest
from django.conf import settings
from django.contrib.auth import load_backend
from django.contrib.sessions.backends import db as django_sessions
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_scopes import scopes_disabled

from config.prepared import PreparedSelect
from hospitals import backends, selectors, sessions
from hospitals.models import Membership, Role

from ..factories import HospitalFactory, MembershipFactory, UserFactory


def test_settings_name_these_reads():
    assert settings.SESSION_ENGINE == "hospitals.sessions"
    assert [type(load_backend(path)) for path in settings.AUTHENTICATION_BACKENDS] == [
        backends.ModelBackend, backends.AuthenticationBackend]


def test_a_session_loads_as_djangos_store_loads_it(db):
    live = sessions.SessionStore()
    live.update({"a": 1, "b": "two"})
    live.create()
    expired = sessions.SessionStore()
    expired["c"] = 3
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(
        expire_date=timezone.now() - datetime.timedelta(seconds=1))

    for key in (live.session_key, expired.session_key, "x" * 32, "short", None):
        ours, djangos = sessions.SessionStore(key), django_sessions.SessionStore(key)
        assert ours.load() == djangos.load()
        assert ours.session_key == djangos.session_key
    assert sessions.SessionStore(live.session_key).load() == {"a": 1, "b": "two"}
    assert sessions.SessionStore(expired.session_key).load() == {}


@pytest.mark.parametrize("backend", [backends.ModelBackend, backends.AuthenticationBackend])
def test_a_session_without_a_user_id_reads_no_user(db, backend, monkeypatch):
    # A statement not compiled yet: compiling it for no id would be refused.
    monkeypatch.setattr(backends, "USER_BY_PK", PreparedSelect(backends.USER_BY_PK.build))
    assert backend().get_user(None) is None
    user = UserFactory()
    assert backend().get_user(user.pk) == user


@pytest.mark.parametrize("backend", [backends.ModelBackend, backends.AuthenticationBackend])
def test_a_sessions_user_is_read_as_djangos_backend_reads_it(db, backend):
    active, inactive = UserFactory(), UserFactory(is_active=False)
    read = backend()
    assert read.get_user(active.pk) == active
    assert read.get_user(str(active.pk)) == active
    assert read.get_user(active.pk).email == active.email
    assert read.get_user(inactive.pk) is None  # may not sign in
    assert read.get_user(max(active.pk, inactive.pk) + 1) is None
    assert read.get_user("not a number") is None
    with CaptureQueriesContext(connection) as ctx:
        read.get_user(active.pk)
    assert len(ctx.captured_queries) == 1


def test_a_users_memberships_are_the_active_ones_in_active_hospitals_by_name(db):
    user = UserFactory()
    with scopes_disabled():
        for name, slug in (("Gamma", "gamma"), ("Alpha", "alpha"), ("Beta", "beta")):
            MembershipFactory(user=user, hospital=HospitalFactory(name=name, slug=slug), role=Role.CLINICIAN)
        MembershipFactory(user=user, hospital=HospitalFactory(name="Closed", slug="closed", is_active=False))
        MembershipFactory(user=user, hospital=HospitalFactory(name="Left", slug="left"), is_active=False)
        MembershipFactory(user=UserFactory(), hospital=HospitalFactory(name="Other", slug="other"))
        expected = list(Membership.objects.select_related("hospital")
                        .filter(user=user, is_active=True, hospital__is_active=True).order_by("hospital__name"))

    with CaptureQueriesContext(connection) as ctx:
        memberships = selectors.user_memberships(user=user)
        names = [m.hospital.name for m in memberships]  # loaded with them
    assert len(ctx.captured_queries) == 1
    assert memberships == expected and names == ["Alpha", "Beta", "Gamma"]
    assert all(m.user_id == user.pk and m.role == Role.CLINICIAN for m in memberships)
    assert selectors.user_memberships(user=UserFactory()) == []
