"""The bulk seeder of bench/api_scale.py writes rows the models accept (every column the
schema requires), and marks the database as seeded only once everything is in, so
``--reuse`` never measures a half-seeded database."""

from __future__ import annotations

import argparse

import pytest
from django.db import connection
from django_scopes import scopes_disabled

from bench import api_scale
from hospitals.models import Hospital
from patients.models import Patient
from screening.models import AiResult, Scan, Screening

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_fills_every_table_and_marks_itself_last():
    args = argparse.Namespace(hospitals=3, patients=40, screenings=120, seed=7)
    assert not api_scale.already_seeded(args)
    api_scale.seed(args)
    with scopes_disabled():
        assert Hospital.objects.count() == 3 and Patient.objects.count() == 40
        assert Scan.objects.count() == Screening.objects.count() == 120
        assert AiResult.objects.count() == Screening.objects.filter(status="done").count() > 0
        scan = Scan.objects.select_related("patient").first()
        assert scan.hospital_id == scan.patient.hospital_id and scan.decoded.name == ""
    assert api_scale.already_seeded(args)
    assert not api_scale.already_seeded(argparse.Namespace(hospitals=3, patients=40, screenings=121, seed=7))
    if connection.vendor == "mysql":  # the checks it turned off for the bulk load are back on
        with connection.cursor() as cur:
            cur.execute("SELECT @@SESSION.foreign_key_checks, @@SESSION.unique_checks")
            assert cur.fetchone() == (1, 1)


def test_marker_is_written_after_the_rows(monkeypatch):
    """A seeding that fails part-way (here: the screenings insert) leaves no marker."""
    args = argparse.Namespace(hospitals=2, patients=10, screenings=20, seed=7)
    real_insert = api_scale.insert

    def failing_insert(table, columns, rows):
        if table == Screening._meta.db_table:
            raise RuntimeError("disk full")
        real_insert(table, columns, rows)

    monkeypatch.setattr(api_scale, "insert", failing_insert)
    with pytest.raises(RuntimeError):
        api_scale.seed(args)
    assert not api_scale.already_seeded(args)
