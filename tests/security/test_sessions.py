"""B3 (idle and absolute session timeouts) and B4 (a new session key at sign-in, no reuse
after sign-out, deactivation ends sessions and OAuth2 tokens). Sign-ins go through
allauth's page; time moves with freezegun."""

import datetime
import os
import subprocess
import sys

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time
from oauth2_provider.models import AccessToken, Application, RefreshToken

from hospitals import services
from hospitals.sessions import SessionStore

from ..factories import hospital_world
from .conftest import fresh_client, sign_in

START = datetime.datetime(2026, 3, 2, 8, 0, tzinfo=datetime.UTC)


@pytest.fixture
def world(hospital_a):
    return hospital_world(hospital_a, tag="ALPHA")


def signed_in(client) -> bool:
    response = client.get(reverse("patients:list", kwargs={"hospital_slug": "alpha"}))
    assert response.status_code in (200, 302)
    return response.status_code == 200


def idle_survives(world, minutes: float) -> bool:
    client = fresh_client()
    with freeze_time(START) as clock:
        sign_in(client, world.clinician.email)
        assert signed_in(client)
        clock.tick(datetime.timedelta(minutes=minutes))
        return signed_in(client)


def test_idle_timeout(world, figure):
    assert settings.SESSION_IDLE_TIMEOUT_MINUTES == 30
    assert idle_survives(world, 29)
    assert not idle_survives(world, 31)
    # Activity keeps the session open: four steps of 29 minutes are two hours in all.
    client = fresh_client()
    with freeze_time(START) as clock:
        sign_in(client, world.clinician.email)
        for _ in range(4):
            clock.tick(datetime.timedelta(minutes=29))
            assert signed_in(client)
    figure("B3 idle", "idle timeout measured: 30 min (29 min idle: signed in; 31 min idle: signed out)",
           idle_minutes=30)


def test_absolute_timeout_whatever_the_activity(world, figure):
    assert settings.SESSION_ABSOLUTE_TIMEOUT_HOURS == 12
    client = fresh_client()
    with freeze_time(START) as clock:
        sign_in(client, world.clinician.email)
        elapsed = datetime.timedelta()
        while elapsed < datetime.timedelta(hours=11, minutes=30):
            clock.tick(datetime.timedelta(minutes=25))
            elapsed += datetime.timedelta(minutes=25)
            assert signed_in(client), elapsed
        clock.move_to(START + datetime.timedelta(hours=11, minutes=59))
        assert signed_in(client)
        clock.move_to(START + datetime.timedelta(hours=12, minutes=1))
        assert not signed_in(client)
        response = client.get(reverse("patients:list", kwargs={"hospital_slug": "alpha"}))
        assert response["Location"].startswith(reverse("account_login"))
        # Signing in again starts a new twelve hours.
        sign_in(client, world.clinician.email)
        assert signed_in(client)
    figure("B3 absolute", "absolute timeout measured: 12 h (11 h 59 with activity: signed in; 12 h 01: signed out)",
           absolute_hours=12)


def test_the_session_list_records_activity_once_a_minute(world):
    """The user's list of sessions (last seen, IP address, browser) is written by the first
    request after sign-in, then at most once a minute: pages in between write nothing."""
    client = fresh_client()
    url = reverse("patients:list", kwargs={"hospital_slug": "alpha"})
    with freeze_time(START) as clock:
        sign_in(client, world.clinician.email)
        clock.tick(datetime.timedelta(seconds=2))
        assert signed_in(client)
        session = UserSession.objects.get(user=world.clinician)
        assert session.last_seen_at == START + datetime.timedelta(seconds=2)
        clock.tick(datetime.timedelta(seconds=30))
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        assert not [q for q in queries.captured_queries if "usersessions_usersession" in q["sql"]]
        session.refresh_from_db()
        assert session.last_seen_at == START + datetime.timedelta(seconds=2)
        clock.tick(datetime.timedelta(seconds=31))
        client.defaults["HTTP_USER_AGENT"] = "Ward tablet"
        assert signed_in(client)
        session.refresh_from_db()
        assert session.last_seen_at == START + datetime.timedelta(seconds=63)
        assert session.user_agent == "Ward tablet"


def test_timeouts_come_from_the_environment(settings):
    env = {**os.environ, "SESSION_IDLE_TIMEOUT_MINUTES": "7", "SESSION_ABSOLUTE_TIMEOUT_HOURS": "3",
           "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_IDLE_TIMEOUT_MINUTES, s.SESSION_ABSOLUTE_TIMEOUT_HOURS, s.SESSION_COOKIE_AGE)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=settings.BASE_DIR)
    assert out.stdout.split() == ["7", "3", str(3 * 3600)]


def test_a_shorter_idle_timeout_applies(world, settings):
    settings.SESSION_IDLE_TIMEOUT_MINUTES = 5
    assert idle_survives(world, 4)
    assert not idle_survives(world, 6)


# --- B4 ----------------------------------------------------------------------------------------------
def test_signing_in_issues_a_new_session_key(world, figure):
    client = fresh_client()
    planted = SessionStore()
    planted["planted"] = True
    planted.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    sign_in(client, world.clinician.email)
    new_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != planted.session_key
    assert not Session.objects.filter(session_key=planted.session_key).exists()
    # The planted key grants nothing.
    attacker = fresh_client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert not signed_in(attacker)
    assert signed_in(client)


def test_a_signed_out_session_key_is_dead(world):
    client = fresh_client()
    sign_in(client, world.clinician.email)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.post(reverse("account_logout"))
    replay = fresh_client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = key
    assert not signed_in(replay)


def test_deactivating_a_user_ends_sessions_and_oauth_tokens(world, django_capture_on_commit_callbacks, figure):
    browsers = [fresh_client(), fresh_client()]
    keys = []
    for browser in browsers:
        sign_in(browser, world.clinician.email)
        assert signed_in(browser)
        keys.append(browser.cookies[settings.SESSION_COOKIE_NAME].value)
    application = Application.objects.create(
        name="probe", user=world.clinician, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    expires = timezone.now() + datetime.timedelta(hours=1)
    access = AccessToken.objects.create(user=world.clinician, application=application, token="probe-access-token",
                                        expires=expires, scope="read")
    RefreshToken.objects.create(user=world.clinician, application=application, token="probe-refresh-token",
                                access_token=access)
    bystander = fresh_client()
    sign_in(bystander, world.admin.email)  # another account keeps its session

    with django_capture_on_commit_callbacks(execute=True):
        services.user_deactivate(user=world.clinician, actor=world.admin)

    attempts = reuse = 0
    for key in keys:
        replay = fresh_client()
        replay.cookies[settings.SESSION_COOKIE_NAME] = key
        attempts += 1
        reuse += signed_in(replay)
    assert reuse == 0
    assert not UserSession.objects.filter(user=world.clinician).exists()
    assert not any(Session.objects.filter(session_key=key).exists() for key in keys)
    assert not AccessToken.objects.filter(user=world.clinician).exists()
    assert not RefreshToken.objects.filter(user=world.clinician).exists()
    assert UserSession.objects.filter(user=world.admin).exists()
    # A deactivated account cannot sign in again.
    client = fresh_client()
    sign_in(client, world.clinician.email)
    assert "_auth_user_id" not in client.session
    figure("B4", f"stale-session reuse successes 0 (of {attempts + 2} replays: planted key, signed-out key, "
           "deactivated user's sessions); OAuth2 tokens left after deactivation 0", reuse=0)
