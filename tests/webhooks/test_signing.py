"""A receiver verifies deliveries with the endpoint's secret; anything altered fails."""

import time

from webhooks import signing

SECRET = "whsec_test-secret"
BODY = b'{"event":"review.recorded","id":"5b0c"}'


def signed(ts: int, body: bytes = BODY, secret: str = SECRET) -> str:
    return signing.signature(secret=secret, timestamp=ts, body=body)


def test_a_fresh_signature_verifies():
    ts = int(time.time())
    assert signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header=signed(ts))


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signed(1700000000) == f"v1={expected}"


def test_tampered_body_timestamp_or_secret_fail():
    ts = int(time.time())
    header = signed(ts)
    assert not signing.verify(secret=SECRET, body=BODY.replace(b"review", b"revieW"), timestamp=str(ts),
                              signature_header=header)
    assert not signing.verify(secret=SECRET, body=BODY, timestamp=str(ts + 1), signature_header=header)
    assert not signing.verify(secret="whsec_other", body=BODY, timestamp=str(ts), signature_header=header)
    assert not signing.verify(secret=SECRET, body=BODY, timestamp="not-a-number", signature_header=header)
    assert not signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header="")


def test_a_replayed_old_delivery_is_refused_after_the_tolerance():
    ts = 1_700_000_000
    header = signed(ts)
    assert signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header=header, now=ts + 299)
    assert not signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header=header, now=ts + 301)
    assert not signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header=header, now=ts - 301)


def test_one_of_several_signatures_may_match():
    ts = int(time.time())
    header = f"{signed(ts, secret='whsec_old')}, {signed(ts)}"
    assert signing.verify(secret=SECRET, body=BODY, timestamp=str(ts), signature_header=header)
