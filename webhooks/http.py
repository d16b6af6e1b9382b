"""The HTTP client of the delivery task: one POST, no redirects, bounded time and reads.

Standard library only (urllib): no proxy from the environment, redirects are answered
as failures (a receiver that moved must be re-registered, and a redirect must not carry
a signed body somewhere else), and only the start of the response body is kept."""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

SNIPPET_BYTES = 1024
USER_AGENT = "CovidCare-Webhooks/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


@dataclass
class SendResult:
    status_code: int | None
    snippet: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DestinationRefused(Exception):
    pass


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that resolve to loopback, private, link-local or reserved addresses
    (a webhook must not become a way into the hospital's or the platform's network)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("Only http and https URLs with a host name can receive webhooks.")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DestinationRefused(f"The host name does not resolve ({exc.strerror}).") from exc
    for info in infos:
        if not is_public_address(info[4][0]):
            raise DestinationRefused(f"{parts.hostname} resolves to a non-public address; refused.")


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> SendResult:
    """POST `body` and report what happened; never raises for network or HTTP errors."""
    started = time.monotonic()

    def done(code=None, snippet="", error=""):
        return SendResult(code, snippet, error[:500], int((time.monotonic() - started) * 1000))

    try:
        check_destination(url, allow_private=allow_private)
    except DestinationRefused as exc:
        return done(error=str(exc))
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with _opener.open(request, timeout=timeout) as response:
            return done(response.status, _snippet(response))
    except urllib.error.HTTPError as exc:
        code = exc.code
        error = f"Redirect to {exc.headers.get('Location', '?')} not followed" if 300 <= code < 400 else ""
        try:
            return done(code, _snippet(exc), error)
        finally:
            exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return done(error=f"{type(reason).__name__}: {reason}")


def _snippet(response) -> str:
    try:
        return response.read(SNIPPET_BYTES).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
