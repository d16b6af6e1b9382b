"""A bearer token is loaded with its application, partner client, hospital and service
account by one statement that is compiled once per database connection
(`config.prepared.PreparedSelect`): the instances must be the ones the queryset loads."""

import datetime
import hashlib

import pytest
from django.db import connection
from django.db.models import Count
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django_scopes import scopes_disabled
from oauth2_provider.models import AccessToken

from config.prepared import PreparedSelect
from hospitals.api.scopes import TOKEN_BY_CHECKSUM, TOKEN_RELATED
from hospitals.models import Hospital


def values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_the_prepared_lookup_loads_what_the_queryset_loads_and_compiles_once(hospital_a, make_partner, monkeypatch):
    _, api = make_partner(hospital_a)
    checksum = hashlib.sha256(api.token.encode()).hexdigest()
    with scopes_disabled():
        expected = AccessToken.objects.select_related(*TOKEN_RELATED).get(token_checksum=checksum)
    compiled = []
    as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **kw: compiled.append(1) or as_sql(self, *a, **kw))
    lookup = PreparedSelect(TOKEN_BY_CHECKSUM.build)  # not compiled yet on this connection

    with CaptureQueriesContext(connection) as ctx:
        first = lookup.first(checksum)
        after_first = len(compiled)
        again = lookup.first(checksum)
        client = first.application.partner_client
        hospital, user = client.hospital, client.service_user
    assert len(ctx.captured_queries) == 2  # one statement a lookup; the related rows came with it
    assert after_first >= 1 and len(compiled) == after_first  # the second lookup compiled nothing

    pairs = [(first, expected), (first.application, expected.application),
             (client, expected.application.partner_client), (hospital, expected.application.partner_client.hospital),
             (user, expected.application.partner_client.service_user)]
    for loaded, reference in pairs:
        assert type(loaded) is type(reference) and values(loaded) == values(reference)
        assert loaded._state.adding is False and loaded._state.db == "default"
    assert values(again) == values(first) and again is not first
    assert isinstance(first.expires, datetime.datetime) and first.expires.tzinfo is not None  # converters ran
    assert hospital.is_active is True and hospital == hospital_a
    assert lookup.first("0" * 64) is None


def test_a_build_whose_values_are_not_its_parameters_in_order_is_refused(db):
    with pytest.raises(ValueError, match="parameters"):
        PreparedSelect(lambda slug: Hospital.objects.filter(slug="fixed")).first("other")
    with pytest.raises(ValueError, match="parameters"):
        PreparedSelect(lambda a, b: Hospital.objects.filter(slug=b).filter(name=a)).first("x", "y")
    with pytest.raises(ValueError, match="plain instances"):
        PreparedSelect(lambda slug: Hospital.objects.filter(slug=slug).annotate(n=Count("id"))).first("a")
    with pytest.raises(ValueError, match="plain instances"):
        PreparedSelect(lambda slug: Hospital.objects.filter(slug=slug).values("id")).first("a")
