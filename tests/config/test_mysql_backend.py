"""config.mysql: Django's MariaDB/MySQL backend, reading date and time columns with the C
parsers of `datetime`; every value reads as mysqlclient's own parsers read it."""

import datetime
import random

import pytest
from django.db import connection


@pytest.fixture
def mysql():
    if connection.vendor != "mysql":
        pytest.skip("the MariaDB backend; this run is on SQLite")
    from config.mysql import base

    return base


def texts(rng: random.Random) -> list[str]:
    """The server's text for DATETIME(6), DATETIME, TIMESTAMP and DATE values, and text of
    other shapes of the same lengths: zero dates, invalid days and times, other separators,
    ISO forms the server never sends (a time zone, week dates, a T)."""
    out = ["0000-00-00 00:00:00", "0000-00-00 00:00:00.000000", "0000-00-00", "2026-02-30", "2026-02-30 10:00:00",
           "2026-12-07 24:00:00", "2026-12-07 23:59:60", "2026/12/07 15:38:13", "2026-12-07T15:38:13",
           "2026-12-07 15:38:13,248502", "2026-12-07 15:38:13.2-0500", "2026-12-07 15:38:13+01:00",
           "2026-W49-1 15:38:13", "2026-W49-1", "20261207", "2026-12-07 15:38:13.2", "2026-12-07 15:38:13.1234567",
           "2026-12-07 15:38", "9999-12-31 23:59:59.999999", "1000-01-01 00:00:00", "0001-01-01", "2026-12-07 "]
    for _ in range(2000):
        moment = datetime.datetime(1, 1, 1) + datetime.timedelta(seconds=rng.randrange(315_000_000_000),
                                                                 microseconds=rng.randrange(1_000_000))
        out += [moment.isoformat(" "), moment.isoformat(" ", timespec="seconds"), moment.date().isoformat()]
    return out


def test_the_parsers_read_what_mysqlclients_read(mysql):
    from MySQLdb.times import Date_or_None, DateTime_or_None

    for text in texts(random.Random(7)):
        assert mysql.datetime_or_none(text) == DateTime_or_None(text), text
        assert type(mysql.datetime_or_none(text)) is type(DateTime_or_None(text)), text
        if len(text) <= 10:
            assert mysql.date_or_none(text) == Date_or_None(text), text


def test_the_connection_reads_date_and_time_columns_with_them(db, mysql):
    from MySQLdb.constants import FIELD_TYPE

    connection.ensure_connection()
    assert connection.settings_dict["ENGINE"] == "config.mysql"
    converter = connection.connection.converter
    assert converter[FIELD_TYPE.DATETIME] is converter[FIELD_TYPE.TIMESTAMP] is mysql.datetime_or_none
    assert converter[FIELD_TYPE.DATE] is mysql.date_or_none
    with connection.cursor() as cursor:
        cursor.execute("SELECT CAST('2026-12-07 15:38:13.248502' AS DATETIME(6)), CAST('2026-12-07 15:38:13' AS "
                       "DATETIME), CAST('2026-12-07 15:38:13.2' AS DATETIME(1)), CAST('2026-12-07' AS DATE), "
                       "CAST('0000-00-00 00:00:00' AS DATETIME), CAST('0000-00-00' AS DATE)")
        row = cursor.fetchone()
    assert row == (datetime.datetime(2026, 12, 7, 15, 38, 13, 248502), datetime.datetime(2026, 12, 7, 15, 38, 13),
                   datetime.datetime(2026, 12, 7, 15, 38, 13, 200000), datetime.date(2026, 12, 7), None, None)
