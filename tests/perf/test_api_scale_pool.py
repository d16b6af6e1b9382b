"""`bench/api_scale.BufferPool` on the MariaDB server the suite runs against: it compares the
InnoDB buffer pool with the database, sets the pool for a run and puts it back afterwards, and
warms it by reading every index of the database."""

from __future__ import annotations

import argparse

import pytest
from django.db import connection

from bench import api_scale

pytestmark = pytest.mark.django_db(transaction=True)


def pool_args(mib: int | None) -> argparse.Namespace:
    if connection.vendor != "mysql":
        pytest.skip("the InnoDB buffer pool is MariaDB's; the SQLite run has none")
    db = connection.settings_dict
    server = f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}"
    return argparse.Namespace(db_server=server, database=db["NAME"], innodb_buffer_pool_mib=mib)


def test_the_pool_is_set_for_the_run_and_put_back(capsys):
    def size_now() -> int:
        probe = api_scale.BufferPool(pool_args(None))
        probe.conn.close()
        return probe.before

    before = size_now()
    with api_scale.BufferPool(pool_args(before + 128)) as pool:
        assert pool.size_mib() == before + 128
    assert size_now() == before
    out = capsys.readouterr().out
    assert f"buffer pool {before + 128} MiB for this run ({before} MiB before it)" in out
    assert f"{connection.settings_dict['NAME']} holds" in out


def test_warming_reads_every_index_of_the_database_into_the_pool():
    """Once warmed, reading every index again finds all of it in the pool: no page is read in."""
    pool = api_scale.BufferPool(pool_args(None))
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(DISTINCT table_name, index_name) FROM information_schema.statistics "
                    "WHERE table_schema = DATABASE()")
        (indexes,) = cur.fetchone()
    assert 0 < pool.database_mib() < pool.size_mib()
    assert pool.warm() == indexes > 50  # every table of the migrated schema has at least its primary key
    misses = pool.misses()
    pool.warm()
    assert pool.misses() == misses
    pool.conn.close()
