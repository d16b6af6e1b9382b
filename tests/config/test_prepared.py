"""`config.prepared.PreparedSelect` binds each call's values to the statement it compiled
once: a datetime as the database's text of it, a boolean as the database writes it
(a parameter on MariaDB, part of the statement on SQLite), and nothing of another type."""

import datetime
import zoneinfo

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from config.prepared import PreparedSelect
from hospitals.models import Hospital

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def test_a_datetime_is_bound_as_the_databases_text_of_it_in_every_call(db):
    expires = timezone.now().replace(microsecond=500_000) + datetime.timedelta(days=1)
    Session.objects.create(session_key="k" * 32, session_data="", expire_date=expires)
    live = PreparedSelect(lambda key, now: Session.objects.filter(session_key=key).filter(expire_date__gt=now))
    second = datetime.timedelta(seconds=1)

    assert live.first("k" * 32, expires - second) is not None  # compiled here
    assert live.first("k" * 32, expires + second) is None
    # Another zone: the same instants, written out in UTC as the column holds them.
    assert live.first("k" * 32, (expires - second).astimezone(PARIS)) is not None
    assert live.first("k" * 32, (expires + second).astimezone(PARIS)) is None
    assert live.first("k" * 32, expires - datetime.timedelta(microseconds=1)) is not None
    assert live.first("k" * 32, expires) is None


def test_a_boolean_is_bound_as_the_database_writes_it(db):
    hospital = Hospital.objects.create(name="Alpha General", slug="alpha")
    by_slug = PreparedSelect(lambda slug, active: Hospital.objects.filter(slug=slug).filter(is_active=active))

    assert by_slug.first("alpha", True) == hospital
    Hospital.objects.filter(pk=hospital.pk).update(is_active=False)
    assert by_slug.first("alpha", True) is None
    if connection.vendor == "sqlite":  # `WHERE is_active`: the value is part of the statement
        with pytest.raises(ValueError, match="written into the statement"):
            by_slug.first("alpha", False)
    else:  # `is_active = %s`
        assert by_slug.first("alpha", False) == hospital


def test_a_value_of_another_type_than_its_parameter_is_refused(db):
    with pytest.raises(ValueError, match="parameters"):  # True is no 1
        PreparedSelect(lambda pk: Hospital.objects.filter(pk=pk)).first(True)
    with pytest.raises(ValueError, match="parameters"):  # in another order than the statement's
        PreparedSelect(lambda pk, slug: Hospital.objects.filter(slug=slug).filter(pk=pk)).first(1, "1")
