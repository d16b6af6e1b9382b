"""Webhook signatures: HMAC-SHA256 over "{timestamp}.{body}" with the endpoint's secret.

Headers of every delivery:
  X-Webhook-Id         the event id (the same on retries and replays: de-duplicate on it)
  X-Webhook-Event      the event name
  X-Webhook-Timestamp  Unix seconds when this attempt was signed
  X-Webhook-Signature  "v1=<hex digest>"

A receiver recomputes the digest over the raw body it got, compares in constant time,
and refuses a timestamp more than TOLERANCE_SECONDS from its own clock (replay). This
module has no Django imports, so a receiver can copy it as it is."""

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300
SCHEME = "v1"


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The header value for one attempt: "v1=<hex hmac-sha256 of b'{timestamp}.' + body>"."""
    message = f"{timestamp}.".encode() + body
    return f"{SCHEME}=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(*, secret: str, body: bytes, timestamp: str, signature_header: str,
           tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """True when the header holds a v1 signature of this body and timestamp, and the
    timestamp is within `tolerance` seconds of `now`."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=ts, body=body)
    # The header may carry several signatures (comma-separated), e.g. during a rotation.
    return any(hmac.compare_digest(expected, part.strip()) for part in (signature_header or "").split(","))
