"""F7: the backup/restore drill (`manage.py backup_drill`) on the suite's database: on
MariaDB with mariadb-dump into a fresh database, on SQLite with the backup API. Both the
report of a clean drill and a drill that must fail (a stored file altered on disk)."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_scopes import scopes_disabled

from tests.factories import add_screening, hospital_world


@pytest.fixture
def two_hospitals(flushable_audit, hospital_a, hospital_b):
    with scopes_disabled():
        worlds = [hospital_world(hospital_a, tag="DRILLA"), hospital_world(hospital_b, tag="DRILLB")]
        for world, tag in zip(worlds, ("DRILLA", "DRILLB")):
            add_screening(world, tag=tag)
    return worlds


def test_backup_restores_into_a_fresh_database_and_verifies(two_hospitals, tmp_path, figure):
    out = io.StringIO()
    call_command("backup_drill", json=True, workdir=tmp_path / "drill", stdout=out)
    report = json.loads(out.getvalue())
    engine = {"mysql": "MariaDB (mariadb-dump, fresh database)", "sqlite": "SQLite (backup API)"}[connection.vendor]
    figure("F7", f"{engine}: RTO measured {report['rto_s']} s ({report['rto_s'] / 60:.2f} min; backup "
                 f"{report['backup_s']} s); tables {report['tables']}, rows {report['rows']}, files {report['files']}; "
                 f"row-count mismatches {report['row_count_mismatches']}; checksum mismatches "
                 f"{report['checksum_mismatches']}; audit entries verified {report['audit_entries']}, problems "
                 f"{report['audit_problems']}", engine=connection.vendor, **{k: report[k] for k in (
                     "rto_s", "backup_s", "tables", "rows", "files", "row_count_mismatches", "checksum_mismatches",
                     "audit_entries", "audit_problems")})
    assert report["ok"] and report["files"] >= 4 and report["scans"] == 2 and report["audit_entries"] > 0
    assert report["row_count_mismatches"] == 0 and report["checksum_mismatches"] == 0


def test_drill_fails_when_a_stored_file_was_altered(two_hospitals, tmp_path):
    scan = two_hospitals[0].scan
    path = Path(settings.MEDIA_ROOT) / scan.file.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="does not match the sha256 recorded at upload"):
        call_command("backup_drill", workdir=tmp_path / "drill", stdout=io.StringIO())
