"""Throttles: per credential (a partner client, or a portal user) on every API request, and
per hospital on scan uploads. Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] and
are read at request time, so settings overrides take effect; the counters live in the
cache named by API_THROTTLE_CACHE (shared by all web nodes). A refusal is a 429 problem.

The count is a sliding window: the requests of the current fixed window (an atomic increment
in the cache) plus those of the previous window, weighted by the share of it that still lies
within the last `duration` seconds. Every web process and node counts into the same integer,
so concurrent requests cannot overwrite each other's counts (DRF's SimpleRateThrottle reads a
list of timestamps and writes it back), and the cost of a request does not grow with the rate:
with the Redis cache it is one round trip (config.cache.RedisCache.incr_and_get).

The weighting assumes that the previous window's requests were spread evenly: no fixed
window ever admits more than the rate, but a client that spends its allowance at the very
end of one window and again early in the next can get up to twice the rate within one
span of `duration` seconds (a sliding log, as DRF keeps, never allows that)."""

import math

from django.conf import settings
from django.core.cache import caches
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class _WindowRateThrottle(SimpleRateThrottle):
    def __init__(self):
        # SimpleRateThrottle reads the rate in __init__; our get_rate reads live settings.
        self.cache = caches[getattr(settings, "API_THROTTLE_CACHE", "default")]
        super().__init__()

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.elapsed = now - window * self.duration
        current = f"{key}:{window}"
        self.count, self.previous = self._add_one(current, f"{key}:{window - 1}")
        if self.previous * (self.duration - self.elapsed) / self.duration + self.count <= self.num_requests:
            return True
        self.cache.decr(current)  # a refused request is not counted
        self.count -= 1
        return False

    def _add_one(self, current: str, previous: str) -> tuple[int, int]:
        """This window's count with the request added, and the previous window's count."""
        timeout = 2 * self.duration  # the next window still reads this one
        incr_and_get = getattr(self.cache, "incr_and_get", None)
        if incr_and_get is not None:
            return incr_and_get(current, timeout, previous)
        self.cache.add(current, 0, timeout)
        return self.cache.incr(current), int(self.cache.get(previous, 0))

    def wait(self):
        """Seconds until one more request fits: the previous window's weight decays linearly
        over this window; when this window's own requests fill it, until the window ends."""
        room = self.num_requests - self.count - 1
        seconds = self.duration - self.elapsed
        if room >= 0 and self.previous:
            seconds -= room * self.duration / self.previous
        return max(1, math.ceil(seconds))


class CredentialRateThrottle(_WindowRateThrottle):
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


class HospitalUploadThrottle(_WindowRateThrottle):
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
