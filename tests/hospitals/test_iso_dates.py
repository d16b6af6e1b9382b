"""The templates' `date` filter (`hospitals/templatetags/iso_dates.py`, a builtin of the
project's engine) prints what Django's own filter prints, for every value and format."""

import datetime
import zoneinfo

import pytest
from django.template import Context, Engine, engines
from django.utils import timezone

from hospitals.templatetags import iso_dates

UTC = datetime.UTC
INSTANTS = [
    datetime.datetime(2026, 12, 31, 23, 30, 5, tzinfo=UTC),  # another day, month and year elsewhere
    datetime.datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
    datetime.datetime(2024, 2, 29, 9, 7, 59, 999999, tzinfo=UTC),
    datetime.datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),  # a year of three digits is padded
    datetime.datetime(2026, 6, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
]
VALUES = [
    *INSTANTS,
    datetime.datetime(2026, 7, 4, 18, 30),  # naive: printed as it is
    datetime.date(2026, 1, 9),
    datetime.date(5, 10, 11),
    datetime.time(8, 5),
    None, "", "2026-01-01", 17,
]
FORMATS = ["Y-m-d", "Y-m-d H:i", "Y-m-d H:i:s", "j F Y", "H:i", "D, d M Y", None]
ZONES = ["UTC", "America/New_York", "Pacific/Kiritimati", "Asia/Kolkata"]


def printed(engine, source, value):
    """What the template prints, or the exception it raises (Django's filter raises TypeError
    for a date with a time in the format)."""
    try:
        return engine.from_string(source).render(Context({"v": value}))
    except Exception as exc:  # noqa: BLE001 - compared with the other engine's
        return type(exc)


def test_the_projects_engine_uses_this_date_filter():
    engine = engines["django"].engine
    parsed = engine.from_string('{{ v|date:"Y-m-d" }}').nodelist[0].filter_expression
    assert parsed.filters[0][0] is iso_dates.date


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_date_filter_prints_what_djangos_prints(zone, fmt):
    ours = engines["django"].engine
    djangos = Engine()  # Django's builtins only
    source = "{{ v|date }}" if fmt is None else f'{{{{ v|date:"{fmt}" }}}}'
    assert djangos.from_string(source).nodelist[0].filter_expression.filters[0][0] is not iso_dates.date
    compared = 0
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        for value in VALUES:
            expected = printed(djangos, source, value)
            assert printed(ours, source, value) == expected, (value, fmt, zone)
            compared += isinstance(expected, str) and expected != ""
    assert compared >= len(INSTANTS)  # the comparisons were of printed dates, not of empty strings


def test_a_datetime_is_printed_in_the_current_time_zone():
    ours = engines["django"].engine.from_string('{{ v|date:"Y-m-d H:i" }}')
    with timezone.override(zoneinfo.ZoneInfo("Pacific/Kiritimati")):  # UTC+14
        assert ours.render(Context({"v": INSTANTS[0]})) == "2027-01-01 13:30"
