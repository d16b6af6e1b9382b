"""Session policy, the second factor for administrators, and caching of personal data.

- `SessionTimeoutMiddleware`: a session ends after SESSION_IDLE_TIMEOUT_MINUTES without a
  request and SESSION_ABSOLUTE_TIMEOUT_HOURS after sign-in, whatever the activity
  (ASVS 3.3.2; HIPAA automatic logoff). The request then continues signed out, so each
  view answers as it does for anyone signed out (sign-in page, 401). It also keeps the
  user's list of sessions (allauth.usersessions: last seen, IP address, browser) up to date:
  on the first request after a sign-in, then at most once a minute, where allauth's
  middleware would write it on every request.
- `MfaRequiredMiddleware`: hospital admins and platform staff (`is_staff`, superusers) need
  a session that passed a second factor (allauth.mfa TOTP or a recovery code). Until they
  have one, every page outside the account pages sends them to enrol (no authenticator
  yet) or to enter a code; so neither patient data, hospital-admin pages nor /admin/
  open on a password alone. The admin's own login page is replaced by allauth's
  (`hospitals.admin_site`), which shares its rate limits.
- `NoStoreMiddleware`: every dynamic response carries `Cache-Control: no-store, private`,
  so no page, API or FHIR answer with patient data stays in a browser or proxy cache.
  Static files are answered by WhiteNoise before this middleware runs.
"""

import time

from allauth.account.authentication import get_authentication_records
from allauth.account.internal.flows.login import record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added
from allauth.mfa.totp.forms import ActivateTOTPForm
from allauth.mfa.totp.internal.auth import TOTP
from allauth.usersessions import app_settings as usersessions_settings
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import urlencode

from . import selectors
from .models import Role

SESSION_STARTED = "security_session_started"
SESSION_LAST_SEEN = "security_session_last_seen"
SESSION_LISTED = "security_session_listed"  # the session list has this session's activity
# The last-seen time is written at most this often (one session write per minute at most).
LAST_SEEN_RESOLUTION_SECONDS = 60


def _now() -> int:
    return int(time.time())


@receiver(user_logged_in)
def start_session_clock(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_STARTED] = request.session[SESSION_LAST_SEEN] = _now()
        request.session.pop(SESSION_LISTED, None)  # the next request records the new session


def session_expired(session, now: int) -> bool:
    idle = settings.SESSION_IDLE_TIMEOUT_MINUTES * 60
    absolute = settings.SESSION_ABSOLUTE_TIMEOUT_HOURS * 3600
    started = session.get(SESSION_STARTED, now)
    last_seen = session.get(SESSION_LAST_SEEN, now)
    return now - last_seen > idle or now - started > absolute


class SessionTimeoutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now, session = _now(), request.session
            if session_expired(session, now):
                logout(request)
            else:
                session.setdefault(SESSION_STARTED, now)
                due = now - session.get(SESSION_LAST_SEEN, 0) >= LAST_SEEN_RESOLUTION_SECONDS
                if due or not session.get(SESSION_LISTED):
                    session[SESSION_LAST_SEEN], session[SESSION_LISTED] = now, True
                    if usersessions_settings.TRACK_ACTIVITY:
                        UserSession.objects.create_from_request(request)
        return self.get_response(request)


# --- second factor ---------------------------------------------------------------------------------
def active_memberships(request) -> list:
    """The signed-in user's active memberships in active hospitals
    (`selectors.user_memberships`), loaded once per request: the second-factor check and
    the tenant scope (hospitals.middleware) read the same rows."""
    memberships = getattr(request, "_active_memberships", None)
    if memberships is None:
        memberships = request._active_memberships = selectors.user_memberships(user=request.user)
    return memberships


def requires_mfa(user, memberships) -> bool:
    """Platform staff and anyone who administers a hospital (`memberships`: the user's
    active ones)."""
    return user.is_staff or user.is_superuser or any(m.role == Role.HOSPITAL_ADMIN for m in memberships)


def session_passed_mfa(request) -> bool:
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, request.user))


@receiver(authenticator_added)
def record_enrolment_as_second_factor(sender, request, user, authenticator, **kwargs):
    """Activating TOTP means entering a valid code: the session has passed the second factor."""
    if request is not None and authenticator.type == Authenticator.Type.TOTP:
        record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type)


class ActivateTotpForm(ActivateTOTPForm):
    """allauth checks the enrolment code without marking it used; marked here, so the code
    typed to enrol cannot sign in again within its window (codes work once, ASVS 2.8.4)."""

    def clean_code(self):
        code = super().clean_code()
        if not TOTP(Authenticator(user_id=self.user.pk))._mark_code_used(code):
            raise ValidationError("This code was used already; wait for the next one.")
        return code


class MfaRequiredMiddleware:
    # Sign-in, sign-out, enrolment, password and email pages stay open.
    open_prefixes = ("/accounts/",)

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (user.is_authenticated and not request.path_info.startswith(self.open_prefixes)
                and not session_passed_mfa(request) and requires_mfa(user, active_memberships(request))):
            enrolled = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
            target = reverse("mfa_reauthenticate" if enrolled else "mfa_activate_totp")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


# --- caching -----------------------------------------------------------------------------------------
class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_cache_control(response, no_store=True, private=True)
        return response
