"""The admin's date hierarchy (`hospitals/templatetags/tenant_admin.py`) lists the years,
months and days Django's would, found through the field's index instead of a DISTINCT over
every row's truncated date."""

import datetime

import pytest
from django.contrib.admin.templatetags import admin_list
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from hospitals.templatetags.tenant_admin import _SkipScanDates, date_hierarchy
from patients.models import LabTest
from screening.models import Screening

from ..factories import LabTestFactory, UserFactory, hospital_world, screening_for

UTC = datetime.UTC
# Both sides of a new year and of a month's end, two rows on one day, a gap of a year.
INSTANTS = [
    datetime.datetime(2024, 12, 31, 23, 30, tzinfo=UTC),
    datetime.datetime(2025, 1, 1, 2, 0, tzinfo=UTC),
    datetime.datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
    datetime.datetime(2025, 3, 15, 8, 0, tzinfo=UTC),
    datetime.datetime(2025, 3, 15, 17, 45, tzinfo=UTC),
    datetime.datetime(2025, 3, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime.datetime(2026, 7, 4, 9, 0, tzinfo=UTC),
]


@pytest.fixture
def screenings(hospital_a, hospital_b):
    """One screening at each of INSTANTS, alternating between two hospitals."""
    worlds = [hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")]
    for n, at in enumerate(INSTANTS):
        world = worlds[n % 2]
        with scope(hospital=world.hospital):
            screening = screening_for(world.patient, actor=world.clinician, seed=n)
        with scopes_disabled():
            Screening.objects.filter(pk=screening.pk).update(created_at=at)
    return worlds


def truncating(queries) -> list[str]:
    """The queries of `QuerySet.datetimes()`, which name their column "datetimefield"."""
    return [q["sql"] for q in queries.captured_queries if "datetimefield" in q["sql"]]


def changelist(params):
    client = Client()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("admin:screening_screening_changelist"), params)
    assert page.status_code == 200
    return page, queries


@pytest.mark.parametrize("params", [
    {},
    {"created_at__year": "2025"},
    {"created_at__year": "2025", "created_at__month": "3"},
    {"created_at__year": "2025", "created_at__month": "3", "created_at__day": "15"},
], ids=["years", "months", "days", "one day"])
def test_the_hierarchy_is_djangos_without_a_distinct_over_the_rows(screenings, params):
    page, queries = changelist(params)
    cl = page.context["cl"]
    with scopes_disabled(), CaptureQueriesContext(connection) as djangos:
        assert date_hierarchy(cl) == admin_list.date_hierarchy(cl)
    if len(params) < 3:  # Django's tag reads the periods with a DISTINCT over the truncated dates
        assert truncating(djangos)
    assert not truncating(queries)
    body = page.content.decode()
    for choice in date_hierarchy(cl)["choices"]:
        assert choice["title"] in body


def test_the_years_link_to_their_rows(screenings):
    page, _ = changelist({})
    years = [choice["title"] for choice in date_hierarchy(page.context["cl"])["choices"]]
    assert years == sorted({str(at.year) for at in INSTANTS})
    for year in years:
        shown = changelist({"created_at__year": year})[0].context["cl"].result_list
        assert len(shown) == sum(str(at.year) == year for at in INSTANTS)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Pacific/Kiritimati"])
@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_periods_are_those_of_the_current_time_zone(screenings, zone, kind):
    def start(day):
        return day.replace(month=1, day=1) if kind == "year" else day.replace(day=1) if kind == "month" else day

    with timezone.override(zone), scopes_disabled():
        local_days = {timezone.localtime(at).date() for at in INSTANTS}
        expected = [timezone.make_aware(datetime.datetime.combine(day, datetime.time()))
                    for day in sorted({start(day) for day in local_days})]
        assert _SkipScanDates(Screening.objects.all()).datetimes("created_at", kind) == expected


@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_date_fields_list_the_same_periods_as_django(screenings, kind):
    a, _ = screenings
    for day in (datetime.date(2023, 2, 28), datetime.date(2023, 12, 31), datetime.date(2025, 6, 1)):
        LabTestFactory(patient=a.patient, recorded_by=a.clinician, sample_date=day)
    with scopes_disabled():
        tests = LabTest.objects.all()
        assert _SkipScanDates(tests).dates("sample_date", kind) == list(tests.dates("sample_date", kind))
        assert _SkipScanDates(tests.none()).dates("sample_date", kind) == []
