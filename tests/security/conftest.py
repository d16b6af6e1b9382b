import itertools

from django.test import Client
from django.urls import reverse

from tests.api.conftest import make_partner  # noqa: F401  (fixture: a partner client with a token)

from ..factories import PASSWORD
from ..test_isolation import worlds  # noqa: F401  (fixture: hospitals A and B with every kind of object)

_addresses = itertools.count(1)


def fresh_client() -> Client:
    """A browser from an address of its own: allauth's per-IP rate limits live in the shared
    cache, so every test signs in from a different address."""
    n = next(_addresses)
    return Client(REMOTE_ADDR=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")


def sign_in(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})
