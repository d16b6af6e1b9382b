"""Throttles: per credential (a partner client, or a portal user) on every API request, and
per hospital on scan uploads. Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] and
are read at request time, so settings overrides take effect; the counters live in the
cache named by API_THROTTLE_CACHE (shared by all web nodes). A refusal is a 429 problem."""

from django.conf import settings
from django.core.cache import caches
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class _SettingsRateThrottle(SimpleRateThrottle):
    def __init__(self):
        # SimpleRateThrottle reads the rate in __init__; our get_rate reads live settings.
        self.cache = caches[getattr(settings, "API_THROTTLE_CACHE", "default")]
        super().__init__()

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class CredentialRateThrottle(_SettingsRateThrottle):
    """Counts requests per partner client (not per token: new tokens do not reset it) or per
    portal user. Unauthenticated requests are refused before throttling matters."""

    scope = "credential"

    def get_cache_key(self, request, view):
        client = getattr(request, "partner_client", None)
        if client is not None:
            ident = f"client:{client.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class HospitalUploadThrottle(_SettingsRateThrottle):
    """Counts scan uploads per hospital, whoever sends them: the inference queue is shared
    by a hospital's clients and users. Only applied where a view lists it."""

    scope = "upload"

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        hospital = getattr(request, "hospital", None)
        if hospital is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"hospital:{hospital.pk}"}
