"""B1: brute force against the sign-in, the admin's included. allauth's `login_failed`
limits (per account and per client address) live in the shared cache (Redis when it
runs); once locked, the right password is refused until the window has passed. The admin
has no login form of its own: /admin/login/ sends everyone to allauth's, so it shares
these limits."""

import datetime

from django.conf import settings
from django.urls import reverse
from freezegun import freeze_time

from ..factories import PASSWORD, UserFactory
from .conftest import fresh_client, sign_in

START = datetime.datetime(2026, 3, 2, 8, 0, tzinfo=datetime.UTC)
LOCKED = "Too many failed login attempts"


def limits() -> dict[str, tuple[int, int]]:
    """{'ip': (amount, seconds), 'key': (amount, seconds)} from ACCOUNT_RATE_LIMITS."""
    units = {"s": 1, "m": 60, "h": 3600}
    result = {}
    for rule in settings.ACCOUNT_RATE_LIMITS["login_failed"].split(","):
        amount, period, per = rule.split("/")
        count = int(period[:-1] or 1)
        result[per] = (int(amount), count * units[period[-1]])
    return result


def refused(response, client) -> bool:
    return "_auth_user_id" not in client.session and response.status_code in (200, 429)


def test_per_account_lockout_holds_the_right_password_until_the_window_ends(db, figure):
    user = UserFactory()
    amount, window = limits()["key"]
    with freeze_time(START) as clock:
        failures = 0
        # Failures from many addresses: the per-account limit does not depend on the address.
        while failures < 100:
            client = fresh_client()
            response = sign_in(client, user.email, "wrong password!")
            if LOCKED in response.content.decode():
                break
            failures += 1
        assert failures == amount
        for client in (fresh_client(), fresh_client()):
            response = sign_in(client, user.email, PASSWORD)
            assert refused(response, client) and LOCKED in response.content.decode()
        # The admin's login does not get around it.
        admin_client = fresh_client()
        response = admin_client.post(reverse("admin:login"), {"username": user.email, "password": PASSWORD})
        assert "_auth_user_id" not in admin_client.session
        assert response["Location"].startswith(reverse("account_login"))
        clock.tick(window - 10)
        client = fresh_client()
        assert refused(sign_in(client, user.email, PASSWORD), client)
        clock.tick(11)
        client = fresh_client()
        assert sign_in(client, user.email, PASSWORD).status_code == 302
        assert client.session["_auth_user_id"] == str(user.pk)
    figure("B1 key", f"failed attempts before lockout: per-key K={failures} (window {window} s; the right password "
           "refused until it ends); admin-login bypass: no", per_key=failures, window_s=window)


def test_per_address_lockout(db, figure):
    amount, window = limits()["ip"]
    victims = [UserFactory() for _ in range(amount + 1)]
    with freeze_time(START) as clock:
        client = fresh_client()
        address = client.defaults["REMOTE_ADDR"]
        failures = 0
        for victim in victims:  # one failure per account: only the per-address limit applies
            response = sign_in(client, victim.email, "wrong password!")
            if response.status_code == 429 or LOCKED in response.content.decode():
                break
            failures += 1
        assert failures == amount
        # The right password of an account never attacked is refused from that address ...
        fresh = UserFactory()
        response = sign_in(client, fresh.email, PASSWORD)
        assert refused(response, client)
        # ... but not from another one.
        other = fresh_client()
        assert sign_in(other, fresh.email, PASSWORD).status_code == 302
        clock.tick(window + 1)
        again = fresh_client()
        again.defaults["REMOTE_ADDR"] = address
        assert sign_in(again, fresh.email, PASSWORD).status_code == 302
    figure("B1 ip", f"failed attempts before lockout: per-IP I={failures} (window {window} s)",
           per_ip=failures, window_s=window)
