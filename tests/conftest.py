import pytest
from django_scopes import scope, scopes_disabled

from hospitals.models import Role

from .factories import PASSWORD, HospitalFactory, MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def unscoped():
    """Test set-up that writes across hospitals (factories) runs with scopes disabled."""
    with scopes_disabled():
        yield


@pytest.fixture
def hospital_a(db):
    return HospitalFactory(name="Alpha General", slug="alpha")


@pytest.fixture
def hospital_b(db):
    return HospitalFactory(name="Beta North", slug="beta")


@pytest.fixture
def make_member(db):
    """make_member(hospital, role) -> User with an active membership."""

    def make(hospital, role=Role.CLINICIAN, **user_fields):
        user = UserFactory(**user_fields)
        with scopes_disabled():
            MembershipFactory(user=user, hospital=hospital, role=role)
        return user

    return make


@pytest.fixture
def login(client):
    def do(user):
        client.force_login(user)
        return client

    return do


@pytest.fixture
def in_scope():
    """in_scope(hospital) as a context manager for service calls in tests."""
    return lambda hospital: scope(hospital=hospital)


__all__ = ["PASSWORD"]
